//! Proofs an auditor checks offline: that a record is in the log a signed checkpoint
//! vouches for (inclusion), and that a later checkpoint only appended to an earlier one
//! (consistency), both RFC 9162 Merkle proofs.
//!
//! # Bundles
//! A [`ProofBundle`] holds everything a verifier needs besides the root public key it
//! pinned: the proof, the signed checkpoint(s), and the key hand-overs from the root key up
//! to the key that signed the (newest) checkpoint. [`verify_bundle`] follows the hand-overs
//! from the pinned key, checks each checkpoint's signature with the key in force at its
//! size, then the Merkle proof. It reads no file: a bundle mailed to an auditor, or pasted
//! into a ticket, is checked on its own.
//!
//! # What a bundle proves, and what it does not
//! An inclusion proof shows that the record, byte for byte, is record `index + 1` of the
//! tree the checkpoint signed; a consistency proof shows that the newer tree extends the
//! older one, so nothing up to the older checkpoint's size was rewritten, removed or
//! reordered since. Both rest on the checkpoints' signatures, which rest on the key chain.
//! A bundle carries the hand-overs only up to the key that signed it: it cannot show that a
//! later hand-over retired that key (the full `keys.jsonl`, checked by `mayfly audit
//! verify --public-key`, does). A restarted root key (a new epoch 0 an operator accepted
//! with a reason) is signed by nothing: [`verify_bundle`] accepts it with a warning that
//! names the reason, because its trust is the operator's word.
//!
//! # Making bundles
//! [`prove_inclusion`] and [`prove_consistency`] verify the log first (every record, the
//! chain, the key chain, the checkpoint, and the checkpoint the proof is made against), and
//! refuse a log that does not verify: a proof over a broken log would prove nothing. They
//! then read the log once, keeping 32 bytes per record (the leaf hashes), and recompute the
//! checkpoint's root from them before building the proof.

use std::fmt;
use std::io::BufRead as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::AuditError;
use super::breaks::BreakKind;
use super::checkpoint::{self, CHECKPOINT_FILE, CheckpointState};
use super::merkle::{self, Frontier, Hash, PartialTree, ProofError};
use super::record::{LineFault, parse_line};
use super::seal::{AuditPublicKey, Handover, SignedCheckpoint};
use super::segment::Layout;
use super::trust::{KeyEpoch, follows, signing_position};
use super::verify::{VerifyOptions, VerifyReport, verify_with};

/// The largest bundle [`ProofBundle::from_json`] reads. A bundle grows with its key chain
/// (about 330 bytes a hand-over, one an hour and one a start): 64 MiB holds more than
/// twenty years of them.
pub const MAX_BUNDLE_LEN: u64 = 64 << 20;

/// A proof and everything needed to check it offline, as `mayfly audit prove` prints it.
///
/// Its JSON form is tagged by `kind` (`"inclusion"` or `"consistency"`); unknown fields
/// are refused, so a bundle means exactly what its fields say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProofBundle {
    /// A record is in the tree a checkpoint signed.
    Inclusion(InclusionBundle),
    /// A newer checkpoint's tree extends an older one's.
    Consistency(ConsistencyBundle),
}

/// That one record is in the log a signed checkpoint vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionBundle {
    /// The record's line, exactly as stored in `audit.log` (without the newline): its
    /// bytes are the Merkle leaf.
    pub record: String,
    /// The leaf's 0-based index: the record's seq minus one.
    pub index: u64,
    /// The tree size: the checkpoint's seq.
    pub size: u64,
    /// The inclusion proof (RFC 9162 section 2.1.3), hex hashes, lowest first.
    pub proof: Vec<String>,
    /// The signed checkpoint the proof leads to.
    pub checkpoint: SignedCheckpoint,
    /// The key hand-overs from the root key up to the one that signed `checkpoint`.
    pub keys: Vec<Handover>,
}

/// That the log of a newer checkpoint extends the log of an older one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyBundle {
    /// The older checkpoint (one an auditor kept).
    pub old: SignedCheckpoint,
    /// The newer checkpoint (the log's current one when the proof was made).
    pub new: SignedCheckpoint,
    /// The consistency proof (RFC 9162 section 2.1.4), hex hashes.
    pub proof: Vec<String>,
    /// The key hand-overs from the root key up to the one that signed `new`.
    pub keys: Vec<Handover>,
}

impl ProofBundle {
    /// Reads a bundle from its JSON form, strictly (no unknown fields, no trailing data).
    ///
    /// # Errors
    /// [`AuditError::Proof`] if it is longer than [`MAX_BUNDLE_LEN`] or not a bundle.
    pub fn from_json(bytes: &[u8]) -> Result<ProofBundle, AuditError> {
        if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_BUNDLE_LEN) {
            return Err(AuditError::proof(format!(
                "the bundle is larger than {MAX_BUNDLE_LEN} bytes"
            )));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| AuditError::proof(format!("not a proof bundle: {e}")))
    }

    /// The bundle as pretty JSON, as `mayfly audit prove` prints it.
    ///
    /// # Errors
    /// [`AuditError::Encode`] if it cannot be encoded (not expected: every field is a
    /// string or a number).
    pub fn to_json_pretty(&self) -> Result<String, AuditError> {
        serde_json::to_string_pretty(self).map_err(|e| AuditError::Encode {
            reason: e.to_string(),
        })
    }

    /// The hand-overs the bundle carries.
    pub fn keys(&self) -> &[Handover] {
        match self {
            ProofBundle::Inclusion(bundle) => &bundle.keys,
            ProofBundle::Consistency(bundle) => &bundle.keys,
        }
    }
}

/// What a proof that holds showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proved {
    /// The record of this seq is in the tree.
    Inclusion {
        /// The record's seq.
        seq: u64,
    },
    /// The tree extends the older one of this size and root.
    Consistency {
        /// The older checkpoint's size.
        old_size: u64,
        /// The older checkpoint's Merkle root, hex.
        old_root: String,
    },
}

/// The result of [`verify_bundle`] when the proof holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofSummary {
    /// What was proved.
    pub proved: Proved,
    /// The (newest) checkpoint's tree size.
    pub size: u64,
    /// Its Merkle root, hex.
    pub root: String,
    /// When it was signed.
    pub time: String,
    /// The replica whose log it is.
    pub replica: String,
    /// The key epoch that signed it.
    pub epoch: u64,
    /// The id of the key that signed it.
    pub key: String,
    /// The id of the pinned root key the chain started from.
    pub root_key: String,
    /// Things the auditor must know although the proof holds: a restarted root key.
    pub warnings: Vec<String>,
}

impl fmt::Display for ProofSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.proved {
            Proved::Inclusion { seq } => write!(
                f,
                "inclusion proof OK: record seq {seq} is in the audit log of {} records",
                self.size
            )?,
            Proved::Consistency { old_size, old_root } => write!(
                f,
                "consistency proof OK: the audit log of {} records extends the one of \
                 {old_size} records (root {old_root}) without rewriting it",
                self.size
            )?,
        }
        write!(
            f,
            " (root {}, replica {}, signed {} by key epoch {} {}, reached from pinned root \
             key {})",
            self.root, self.replica, self.time, self.epoch, self.key, self.root_key
        )
    }
}

/// An inclusion proof of record `seq` against the log's current signed checkpoint, or
/// against `against` (a checkpoint kept elsewhere, which must verify against the log).
///
/// # Errors
/// [`AuditError::Proof`] when the log does not verify (against `against` too), has no
/// signed checkpoint, or `seq` is 0 or not covered by the checkpoint (not yet signed for,
/// or beyond the log); [`AuditError::Io`] and [`AuditError::Key`] when the files cannot
/// be read.
pub fn prove_inclusion(
    dir: &Path,
    seq: u64,
    against: Option<&SignedCheckpoint>,
) -> Result<ProofBundle, AuditError> {
    if seq == 0 {
        return Err(AuditError::proof(
            "records are numbered from 1: there is no record 0",
        ));
    }
    let kept: Vec<SignedCheckpoint> = against.into_iter().cloned().collect();
    let (report, current) = checked(dir, &kept)?;
    let checkpoint = against.cloned().unwrap_or(current);
    if seq > checkpoint.seq {
        let reason = if against.is_some() {
            format!(
                "the checkpoint given covers records 1 to {} only, not record {seq}: prove \
                 against a later one (leave out --checkpoint for the log's current one)",
                checkpoint.seq
            )
        } else if seq <= report.records {
            format!(
                "record {seq} is not yet signed for: the current checkpoint covers records \
                 1 to {}; wait a second (the server signs one about once a second while it \
                 appends), or start the server if it is down, then run this again",
                checkpoint.seq
            )
        } else {
            format!(
                "the log holds {} records: there is no record {seq}",
                report.records
            )
        };
        return Err(AuditError::proof(reason));
    }
    let keys = chain_for(&report.keys, &checkpoint)?;
    let leaves = read_leaves(dir, checkpoint.seq, Some(seq))?;
    check_root(&leaves, &checkpoint)?;
    let record = leaves.kept.clone().ok_or_else(|| {
        AuditError::proof(format!("record {seq} was not found while reading the log"))
    })?;
    let index = seq - 1;
    let proof = leaves
        .tree()
        .inclusion_proof(index)
        .map_err(|e| AuditError::proof(e.to_string()))?;
    Ok(ProofBundle::Inclusion(InclusionBundle {
        record,
        index,
        size: checkpoint.seq,
        proof: proof.iter().map(merkle::to_hex).collect(),
        checkpoint,
        keys,
    }))
}

/// A consistency proof from `old` (a signed checkpoint of this log kept elsewhere, an
/// auditor's say) to the log's current signed checkpoint.
///
/// # Errors
/// [`AuditError::Proof`] when the log does not verify against itself or against `old`
/// (rewritten or rolled back since `old` was signed: there is no proof to give), or `old`
/// is newer than the current checkpoint; [`AuditError::Io`] and [`AuditError::Key`] when
/// the files cannot be read.
pub fn prove_consistency(dir: &Path, old: &SignedCheckpoint) -> Result<ProofBundle, AuditError> {
    let (report, current) = checked(dir, std::slice::from_ref(old))?;
    if old.seq > current.seq {
        return Err(AuditError::proof(format!(
            "the old checkpoint covers records 1 to {}, more than the log's current \
             checkpoint (1 to {}): wait a second for the next one, then run this again",
            old.seq, current.seq
        )));
    }
    let keys = chain_for(&report.keys, &current)?;
    consistency_bundle(dir, old, current, keys)
}

/// Builds a consistency bundle from the log in `dir`, without verifying it first (the
/// caller has); split out so that tests can play an insider who skips the check.
fn consistency_bundle(
    dir: &Path,
    old: &SignedCheckpoint,
    new: SignedCheckpoint,
    keys: Vec<Handover>,
) -> Result<ProofBundle, AuditError> {
    let leaves = read_leaves(dir, new.seq, None)?;
    check_root(&leaves, &new)?;
    let proof = leaves
        .tree()
        .consistency_proof(old.seq)
        .map_err(|e| match e {
            merkle::ProofError::Pruned { .. } => AuditError::proof(format!(
                "the old checkpoint (size {}) is from before records that retention removed \
                 (the kept log starts at seq {}): the proof would need them",
                old.seq,
                leaves.start.size() + 1
            )),
            other => AuditError::proof(other.to_string()),
        })?;
    Ok(ProofBundle::Consistency(ConsistencyBundle {
        old: old.clone(),
        new,
        proof: proof.iter().map(merkle::to_hex).collect(),
        keys,
    }))
}

/// Checks a bundle offline: the key chain from `pinned`, each checkpoint's signature, and
/// the Merkle proof.
///
/// # Errors
/// [`AuditError::Proof`] naming the first thing that does not hold.
pub fn verify_bundle(
    bundle: &ProofBundle,
    pinned: &AuditPublicKey,
) -> Result<ProofSummary, AuditError> {
    let chain = Chain::follow(bundle.keys(), pinned)?;
    match bundle {
        ProofBundle::Inclusion(bundle) => {
            let key = chain.signed(&bundle.checkpoint, "checkpoint")?;
            let seq = check_inclusion(bundle)?;
            Ok(chain.summary(Proved::Inclusion { seq }, &bundle.checkpoint, key))
        }
        ProofBundle::Consistency(bundle) => {
            chain.signed(&bundle.old, "old checkpoint")?;
            let key = chain.signed(&bundle.new, "new checkpoint")?;
            check_consistency(bundle)?;
            let proved = Proved::Consistency {
                old_size: bundle.old.seq,
                old_root: bundle.old.root.clone(),
            };
            Ok(chain.summary(proved, &bundle.new, key))
        }
    }
}

/// Checks offline that the key chain `keys` leads from `pinned` to the key that signed
/// `checkpoint` (what a bundle or a segment's seal carries); returns the chain's warnings
/// (a root key an operator restarted).
///
/// # Errors
/// [`AuditError::Proof`] naming the first thing that does not hold.
pub(super) fn check_signed(
    keys: &[Handover],
    checkpoint: &SignedCheckpoint,
    pinned: &AuditPublicKey,
) -> Result<Vec<String>, AuditError> {
    let chain = Chain::follow(keys, pinned)?;
    chain.signed(checkpoint, "checkpoint")?;
    Ok(chain.warnings)
}

/// The log's current signed checkpoint, and the log verified against it and `kept`.
fn checked(
    dir: &Path,
    kept: &[SignedCheckpoint],
) -> Result<(VerifyReport, SignedCheckpoint), AuditError> {
    let current = match checkpoint::read(dir)? {
        CheckpointState::Found(signed) => signed,
        CheckpointState::Missing => {
            return Err(AuditError::proof(format!(
                "there is no {CHECKPOINT_FILE} in {}: nothing is signed to prove against",
                dir.display()
            )));
        }
        CheckpointState::Legacy(_) => {
            return Err(AuditError::proof(format!(
                "{CHECKPOINT_FILE} in {} is unsigned (a log of a version before the audit \
                 key): there is nothing signed to prove against",
                dir.display()
            )));
        }
        CheckpointState::Unreadable(reason) => {
            return Err(AuditError::proof(format!(
                "{CHECKPOINT_FILE} in {} is unreadable: {reason}",
                dir.display()
            )));
        }
    };
    // The checkpoint read here is judged too: the log, read after it, reaches it.
    let mut checkpoints = vec![current.clone()];
    checkpoints.extend(kept.iter().cloned());
    let options = VerifyOptions {
        public_key: None,
        checkpoints,
    };
    let report = verify_with(dir, &options)?;
    if let Some(problem) = &report.problem {
        return Err(AuditError::proof(format!(
            "the audit log in {} does not verify ({problem}); a proof over it would prove \
             nothing (`mayfly audit verify` tells more)",
            dir.display()
        )));
    }
    Ok((report, current))
}

/// The hand-overs from the root key up to the key that signed `checkpoint`.
fn chain_for(
    keys: &[KeyEpoch],
    checkpoint: &SignedCheckpoint,
) -> Result<Vec<Handover>, AuditError> {
    let position = signing_position(keys, checkpoint.epoch, checkpoint.seq).ok_or_else(|| {
        AuditError::proof(format!(
            "no key of the log's chain signs for epoch {} at size {}",
            checkpoint.epoch, checkpoint.seq
        ))
    })?;
    Ok(keys
        .iter()
        .take(position + 1)
        .map(|key| key.handover.clone())
        .collect())
}

/// The leaf hashes of the first records of a log, and one record's line. Records retention
/// removed are summed up by the frontier they left (`start`).
struct Leaves {
    start: Frontier,
    hashes: Vec<Hash>,
    kept: Option<String>,
}

impl Leaves {
    fn tree(&self) -> PartialTree<'_> {
        PartialTree::new(&self.start, &self.hashes)
    }
}

/// Reads the first `size` records of the log in `dir` once (through its segments), hashing
/// each line (without its newline) as a Merkle leaf, and keeps the line of record `keep`.
fn read_leaves(dir: &Path, size: u64, keep: Option<u64>) -> Result<Leaves, AuditError> {
    let layout = Layout::read(dir)?;
    let first = layout.start.size + 1;
    if keep.is_some_and(|keep| keep < first) {
        return Err(AuditError::proof(format!(
            "record {} was removed by retention: the kept log starts at seq {first}",
            keep.unwrap_or_default()
        )));
    }
    let (mut reader, _) = layout.reader()?;
    let path = &layout.live;
    let capacity = usize::try_from(size.saturating_sub(first - 1).min(1 << 20)).unwrap_or(0);
    let mut leaves = Leaves {
        start: layout.start.frontier.clone(),
        hashes: Vec::with_capacity(capacity),
        kept: None,
    };
    let mut buf = Vec::new();
    for seq in first..=size {
        buf.clear();
        reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| AuditError::io("read", path, e))?;
        let Some(line) = buf.strip_suffix(b"\n") else {
            return Err(AuditError::proof(format!(
                "the log in {} ends before record {seq}, although the checkpoint covers {size}",
                dir.display()
            )));
        };
        leaves.hashes.push(merkle::leaf_hash(line));
        if keep == Some(seq) {
            let text = std::str::from_utf8(line)
                .map_err(|_| AuditError::proof(format!("record {seq} is not UTF-8 text")))?;
            leaves.kept = Some(text.to_owned());
        }
    }
    Ok(leaves)
}

/// Checks that the leaves read make the tree `checkpoint` signed (the log could have been
/// replaced between the check and the read).
fn check_root(leaves: &Leaves, checkpoint: &SignedCheckpoint) -> Result<(), AuditError> {
    if merkle::to_hex(&leaves.tree().root()) != checkpoint.root {
        return Err(AuditError::proof(format!(
            "the log's first {} records, as read now, do not make the tree the checkpoint \
             signed: the log changed while it was read; run this again, and `mayfly audit \
             verify` if it fails again",
            checkpoint.seq
        )));
    }
    Ok(())
}

/// The key chain of a bundle, as followed from the pinned root key.
struct Chain {
    /// The keys, in order (the first is the pinned root key).
    keys: Vec<KeyEpoch>,
    root: AuditPublicKey,
    warnings: Vec<String>,
}

impl Chain {
    /// Follows `handovers` from `pinned` by the log's own rule ([`follows`]): the first is
    /// the pinned root key (epoch 0, unsigned), each next one is signed by the key before
    /// it with the next epoch, or is a restarted root key with the operator's reason (a
    /// warning). A bundle also has its hand-overs in size order.
    fn follow(handovers: &[Handover], pinned: &AuditPublicKey) -> Result<Chain, AuditError> {
        if handovers.is_empty() {
            return Err(AuditError::proof(
                "the bundle holds no key hand-over: nothing leads from the pinned root key \
                 to the key that signed the checkpoint",
            ));
        }
        let mut chain = Chain {
            keys: Vec::with_capacity(handovers.len()),
            root: *pinned,
            warnings: Vec::new(),
        };
        for (number, handover) in (1..).zip(handovers) {
            chain.admit(number, handover, pinned)?;
        }
        Ok(chain)
    }

    /// Checks hand-over number `number` (1-based) against the key before it.
    fn admit(
        &mut self,
        number: usize,
        handover: &Handover,
        pinned: &AuditPublicKey,
    ) -> Result<(), AuditError> {
        let key = handover.key().map_err(|e| {
            let which = if number == 1 { " (the root key)" } else { "" };
            AuditError::proof(format!("key hand-over {number}{which}: {e}"))
        })?;
        let previous = self.keys.last();
        if let Some(previous) = previous
            && handover.size < previous.from_size
        {
            return Err(AuditError::proof(format!(
                "key hand-over {number} (epoch {}) is at size {}, before the one before it \
                 (size {}): the hand-overs are out of order",
                handover.epoch, handover.size, previous.from_size
            )));
        }
        match follows(handover, &key, previous, Some(*pinned), 0) {
            Ok(None) => {}
            Ok(Some(reason)) => self.warnings.push(format!(
                "at size {} the key chain restarts with root key {}, which no earlier key \
                 signed: an operator accepted it, giving the reason \"{reason}\"; what it \
                 signs is trusted on that operator's word, not by the pinned key",
                handover.size,
                key.id()
            )),
            Err(kind) => return Err(refusal(number, handover, previous, &kind)),
        }
        self.keys.push(KeyEpoch {
            epoch: handover.epoch,
            key,
            from_size: handover.size,
            handover: handover.clone(),
        });
        Ok(())
    }

    /// Checks that the key of the chain in force at `checkpoint`'s size and epoch signed
    /// it; returns that key.
    fn signed(
        &self,
        checkpoint: &SignedCheckpoint,
        what: &str,
    ) -> Result<AuditPublicKey, AuditError> {
        let key = signing_position(&self.keys, checkpoint.epoch, checkpoint.seq)
            .and_then(|position| self.keys.get(position))
            .map(|epoch| epoch.key)
            .ok_or_else(|| {
                AuditError::proof(format!(
                    "the {what} (size {}) names key epoch {}, but no key of that epoch in the \
                     bundle's chain signs for size {}: a hand-over is missing, or the \
                     checkpoint was forged",
                    checkpoint.seq, checkpoint.epoch, checkpoint.seq
                ))
            })?;
        if !checkpoint.verifies_with(&key) {
            return Err(AuditError::proof(format!(
                "the {what} (size {}) is not signed by the audit key of epoch {} ({}): it \
                 was altered or forged",
                checkpoint.seq,
                checkpoint.epoch,
                key.id()
            )));
        }
        Ok(key)
    }

    fn summary(
        &self,
        proved: Proved,
        checkpoint: &SignedCheckpoint,
        key: AuditPublicKey,
    ) -> ProofSummary {
        ProofSummary {
            proved,
            size: checkpoint.seq,
            root: checkpoint.root.clone(),
            time: checkpoint.time.clone(),
            replica: checkpoint.replica.clone(),
            epoch: checkpoint.epoch,
            key: key.id(),
            root_key: self.root.id(),
            warnings: self.warnings.clone(),
        }
    }
}

/// Why hand-over number `number` breaks the bundle's key chain, in a bundle's words (the
/// log's [`BreakKind`] names lines of a log the bundle does not carry).
fn refusal(
    number: usize,
    handover: &Handover,
    previous: Option<&KeyEpoch>,
    kind: &BreakKind,
) -> AuditError {
    let reason = match (kind, previous) {
        (BreakKind::EpochOutOfOrder { found, .. }, None) => {
            format!("the bundle's key chain starts at epoch {found}, not at a root key (epoch 0)")
        }
        (BreakKind::EpochOutOfOrder { expected, found }, Some(_)) => format!(
            "key hand-over {number}: expected audit key epoch {expected}, found {found}: a \
             hand-over was removed from the bundle, or replayed"
        ),
        (BreakKind::KeyRecord { .. }, None) => "the bundle's root key (epoch 0) carries a \
             signature: a root key is trusted by being pinned, never by a signature"
            .to_owned(),
        (BreakKind::KeyRecord { .. }, Some(_)) => format!(
            "key hand-over {number} starts a new root key at size {} without an operator's \
             reason, and no earlier key signed it",
            handover.size
        ),
        (BreakKind::UnpinnedKey { found, pinned }, _) => format!(
            "the bundle's root audit key is {found}, not the pinned key {pinned}: the log was \
             started, or re-made, under another key"
        ),
        (BreakKind::HandoverSignature { epoch, .. }, Some(previous)) => format!(
            "key hand-over {number} (to epoch {epoch}) is not signed by the key of epoch {} \
             ({}): it was forged",
            previous.epoch,
            previous.key.id()
        ),
        (other, _) => format!("key hand-over {number}: {other:?}"),
    };
    AuditError::proof(reason)
}

/// Checks an inclusion bundle's record and proof against its (already verified)
/// checkpoint; returns the record's seq.
fn check_inclusion(bundle: &InclusionBundle) -> Result<u64, AuditError> {
    let checkpoint = &bundle.checkpoint;
    if bundle.size != checkpoint.seq {
        return Err(AuditError::proof(format!(
            "the proof is for a tree of {} records, but the checkpoint signed a tree of {}",
            bundle.size, checkpoint.seq
        )));
    }
    let record = parse_line(bundle.record.as_bytes()).map_err(|fault| {
        AuditError::proof(match fault {
            LineFault::Unparseable(reason) => {
                format!("the record is not an audit record: {reason}")
            }
            LineFault::HashMismatch => {
                "the record was edited: its hash does not match its contents".to_owned()
            }
            LineFault::NotCanonical => "the record was edited: its bytes differ from what the \
                                        writer wrote (a field added, keys reordered or \
                                        whitespace changed)"
                .to_owned(),
        })
    })?;
    if Some(record.seq) != bundle.index.checked_add(1) {
        return Err(AuditError::proof(format!(
            "the record is seq {}, but the proof is for index {} (seq {}): the record or the \
             index was swapped",
            record.seq,
            bundle.index,
            bundle.index.saturating_add(1)
        )));
    }
    if record.seq == checkpoint.seq && record.hash != checkpoint.hash {
        return Err(AuditError::proof(format!(
            "the record is the checkpoint's last (seq {}), but its hash is not the head the \
             checkpoint signed",
            record.seq
        )));
    }
    let proof = hashes(&bundle.proof)?;
    let root = merkle::from_hex(&checkpoint.root)
        .map_err(|e| AuditError::proof(format!("the checkpoint's root: {e}")))?;
    let leaf = merkle::leaf_hash(bundle.record.as_bytes());
    merkle::verify_inclusion(&leaf, bundle.index, bundle.size, &proof, &root).map_err(|e| {
        AuditError::proof(match e {
            ProofError::RootMismatch => format!(
                "record seq {} is not in the tree the checkpoint signed: the proof leads to \
                 another root than {}",
                record.seq, checkpoint.root
            ),
            other => format!("the inclusion proof is malformed: {other}"),
        })
    })?;
    Ok(record.seq)
}

/// Checks a consistency bundle's proof between its (already verified) checkpoints.
fn check_consistency(bundle: &ConsistencyBundle) -> Result<(), AuditError> {
    let (old, new) = (&bundle.old, &bundle.new);
    if old.seq == new.seq && old.hash != new.hash {
        return Err(AuditError::proof(format!(
            "both checkpoints are of {} records but name different heads: the log forked",
            old.seq
        )));
    }
    let proof = hashes(&bundle.proof)?;
    let root = |checkpoint: &SignedCheckpoint, which: &str| {
        merkle::from_hex(&checkpoint.root)
            .map_err(|e| AuditError::proof(format!("the {which} checkpoint's root: {e}")))
    };
    let old_root = root(old, "old")?;
    let new_root = root(new, "new")?;
    merkle::verify_consistency(old.seq, new.seq, &old_root, &new_root, &proof).map_err(|e| {
        AuditError::proof(match e {
            ProofError::OldRootMismatch => format!(
                "the log of {} records does not extend the one of {} records: the proof does \
                 not lead to the old checkpoint's root, so records up to seq {} were \
                 rewritten, removed or reordered since it was signed",
                new.seq, old.seq, old.seq
            ),
            ProofError::RootMismatch => format!(
                "the log of {} records is not shown to extend the one of {} records: the \
                 proof does not lead to the new checkpoint's root (records up to seq {} were \
                 rewritten since the old checkpoint was signed, or the proof is not one for \
                 these checkpoints)",
                new.seq, old.seq, old.seq
            ),
            ProofError::BadSizes { old_size, new_size } => format!(
                "the old checkpoint ({old_size} records) is larger than the new one \
                 ({new_size}): they are swapped, or the log was rolled back"
            ),
            other => format!("the consistency proof is malformed: {other}"),
        })
    })
}

/// A proof's hashes from hex.
fn hashes(proof: &[String]) -> Result<Vec<Hash>, AuditError> {
    proof
        .iter()
        .enumerate()
        .map(|(i, text)| {
            merkle::from_hex(text)
                .map_err(|e| AuditError::proof(format!("proof hash {}: {e}", i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use super::super::AuditLog;
    use super::super::record::AuditRecord;
    use super::super::seal::{AuditSigner, KEY_FILE, ROOT_PUBLIC_KEY_FILE, handover_body};
    use super::super::test_support::{
        append_more, copy_dir, copy_with_key, event, forge, log_lines, relink, write_lines,
        write_log,
    };
    use super::super::verify;
    use super::*;

    fn pinned(dir: &Path) -> AuditPublicKey {
        AuditPublicKey::from_pem(
            &std::fs::read(dir.join("key").join(ROOT_PUBLIC_KEY_FILE)).unwrap(),
        )
        .unwrap()
    }

    fn current(dir: &Path) -> SignedCheckpoint {
        checkpoint::read_checkpoint(&dir.join(CHECKPOINT_FILE)).unwrap()
    }

    /// Records 1-4 under epoch 0, 5-7 under epoch 1, 8-10 under epoch 2.
    async fn three_epochs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 4).await;
        append_more(dir.path(), 5, 3).await;
        append_more(dir.path(), 8, 3).await;
        let report = verify(dir.path()).unwrap();
        assert!(report.is_intact(), "control: {report:?}");
        let epochs: Vec<(u64, u64)> = report.keys.iter().map(|k| (k.epoch, k.from_size)).collect();
        assert_eq!(epochs, [(0, 0), (1, 4), (2, 7)]);
        dir
    }

    fn inclusion(bundle: ProofBundle) -> InclusionBundle {
        match bundle {
            ProofBundle::Inclusion(bundle) => bundle,
            other => panic!("not an inclusion bundle: {other:?}"),
        }
    }

    fn consistency(bundle: ProofBundle) -> ConsistencyBundle {
        match bundle {
            ProofBundle::Consistency(bundle) => bundle,
            other => panic!("not a consistency bundle: {other:?}"),
        }
    }

    /// The reason a bundle does not hold.
    fn refused(bundle: ProofBundle, key: &AuditPublicKey) -> String {
        match verify_bundle(&bundle, key) {
            Err(AuditError::Proof { reason }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn assert_holds(bundle: &ProofBundle, key: &AuditPublicKey) -> ProofSummary {
        verify_bundle(bundle, key).unwrap_or_else(|e| panic!("control: {e}"))
    }

    #[tokio::test]
    async fn every_record_is_proved_in_logs_of_several_sizes_and_epochs() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 1).await;
        let key = pinned(dir.path());
        let mut kept = None;
        for (size, more) in [(1, 0), (3, 2), (8, 5), (13, 5)] {
            if more > 0 {
                append_more(dir.path(), size - more + 1, more).await;
            }
            if size == 3 {
                kept = Some(current(dir.path()));
            }
            let lines = log_lines(dir.path());
            assert_eq!(lines.len() as u64, size);
            for seq in 1..=size {
                let bundle = prove_inclusion(dir.path(), seq, None).unwrap();
                let summary = assert_holds(&bundle, &key);
                assert_eq!(summary.proved, Proved::Inclusion { seq });
                assert_eq!(summary.size, size);
                // Every open starts an epoch: the keys lead to the one of this size.
                assert_eq!(
                    bundle.keys().len(),
                    [1, 3, 8, 13].iter().position(|s| *s == size).unwrap() + 1
                );
                let json = bundle.to_json_pretty().unwrap();
                assert_eq!(ProofBundle::from_json(json.as_bytes()).unwrap(), bundle);
                let value: serde_json::Value = serde_json::from_str(&json).unwrap();
                assert_eq!(value["kind"], "inclusion");
                assert_eq!(value["index"], seq - 1);
                assert_eq!(value["size"], size);
                assert_eq!(value["record"], lines[(seq - 1) as usize].as_str());
            }
        }
        // Against a checkpoint kept at size 3 (epoch 1), after the log grew on.
        let kept = kept.unwrap();
        let bundle = inclusion(prove_inclusion(dir.path(), 2, Some(&kept)).unwrap());
        assert_eq!((bundle.size, bundle.keys.len()), (3, 2));
        assert_eq!(bundle.checkpoint, kept);
        assert_holds(&ProofBundle::Inclusion(bundle), &key);
        let beyond = prove_inclusion(dir.path(), 4, Some(&kept)).unwrap_err();
        assert!(
            beyond.to_string().contains("covers records 1 to 3 only"),
            "{beyond}"
        );
    }

    #[tokio::test]
    async fn a_proof_is_refused_for_what_is_not_signed_or_not_there() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 4).await;
        let old = std::fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap();
        append_more(dir.path(), 5, 3).await;
        prove_inclusion(dir.path(), 7, None).expect("control: signed for");

        let no_zero = prove_inclusion(dir.path(), 0, None).unwrap_err();
        assert!(no_zero.to_string().contains("no record 0"), "{no_zero}");
        let beyond = prove_inclusion(dir.path(), 8, None).unwrap_err();
        assert!(
            beyond
                .to_string()
                .contains("the log holds 7 records: there is no record 8"),
            "{beyond}"
        );

        // A checkpoint that lags the log (a crash before the next one was signed).
        let lagging = copy_dir(dir.path());
        std::fs::write(lagging.path().join(CHECKPOINT_FILE), &old).unwrap();
        assert!(
            verify(lagging.path()).unwrap().is_intact(),
            "control: a lag is no break"
        );
        prove_inclusion(lagging.path(), 4, None).expect("control: signed for");
        let unsigned = prove_inclusion(lagging.path(), 5, None).unwrap_err();
        assert!(
            unsigned
                .to_string()
                .contains("record 5 is not yet signed for: the current checkpoint covers records 1 to 4; wait a second"),
            "{unsigned}"
        );

        // A log that does not verify gets no proof.
        let broken = copy_dir(dir.path());
        let mut lines = log_lines(broken.path());
        lines[1] = lines[1].replace("audience-2", "audience-X");
        write_lines(broken.path(), &lines);
        let error = prove_inclusion(broken.path(), 1, None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("does not verify (line 2 (seq 2): record was edited"),
            "{error}"
        );

        // Nothing signed to prove against.
        let bare = copy_dir(dir.path());
        std::fs::remove_file(bare.path().join(CHECKPOINT_FILE)).unwrap();
        let error = prove_inclusion(bare.path(), 1, None).unwrap_err();
        assert!(
            error.to_string().contains("there is no checkpoint.json"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn every_tampering_of_an_inclusion_bundle_is_named() {
        let dir = three_epochs().await;
        let key = pinned(dir.path());
        let lines = log_lines(dir.path());
        let good = inclusion(prove_inclusion(dir.path(), 5, None).unwrap());
        assert_eq!((good.index, good.size, good.keys.len()), (4, 10, 3));
        let summary = assert_holds(&ProofBundle::Inclusion(good.clone()), &key);
        assert!(summary.warnings.is_empty());
        assert_eq!(summary.epoch, 2);
        assert!(
            summary
                .to_string()
                .starts_with("inclusion proof OK: record seq 5 is in the audit log of 10 records"),
            "{summary}"
        );
        let (forger, _) = AuditSigner::generate(2).unwrap();
        let reason = |change: &dyn Fn(&mut InclusionBundle)| {
            let mut bundle = good.clone();
            change(&mut bundle);
            refused(ProofBundle::Inclusion(bundle), &key)
        };

        let flipped = reason(&|b| {
            let first = if b.proof[0].starts_with('0') {
                "1"
            } else {
                "0"
            };
            b.proof[0].replace_range(0..1, first);
        });
        assert!(
            flipped.contains("record seq 5 is not in the tree the checkpoint signed"),
            "{flipped}"
        );
        let another = reason(&|b| b.record = lines[5].clone());
        assert!(
            another.contains("the record is seq 6, but the proof is for index 4 (seq 5)"),
            "{another}"
        );
        let index = reason(&|b| b.index = 5);
        assert!(
            index.contains("the record is seq 5, but the proof is for index 5 (seq 6)"),
            "{index}"
        );
        let both = reason(&|b| {
            b.record = lines[5].clone();
            b.index = 5;
        });
        assert!(both.contains("record seq 6 is not in the tree"), "{both}");
        let edited = reason(&|b| b.record = b.record.replace("audience-5", "audience-X"));
        assert!(
            edited.contains("the record was edited: its hash does not match"),
            "{edited}"
        );
        let short = reason(&|b| {
            b.proof.pop();
        });
        assert!(
            short.contains("the inclusion proof is malformed"),
            "{short}"
        );
        let size = reason(&|b| b.size = 9);
        assert!(
            size.contains("a tree of 9 records, but the checkpoint signed a tree of 10"),
            "{size}"
        );
        let root = reason(&|b| b.checkpoint.root = merkle::to_hex(&merkle::empty_root()));
        assert!(
            root.contains("the checkpoint (size 10) is not signed by the audit key of epoch 2"),
            "{root}"
        );
        let seq = reason(&|b| {
            b.checkpoint.seq = 9;
            b.size = 9;
        });
        assert!(
            seq.contains("the checkpoint (size 9) is not signed"),
            "{seq}"
        );
        let forged = reason(&|b| {
            let root = merkle::from_hex(&b.checkpoint.root).unwrap();
            b.checkpoint = SignedCheckpoint::sign(
                &forger,
                b.checkpoint.seq,
                b.checkpoint.hash.clone(),
                &root,
                b.checkpoint.time.clone(),
                b.checkpoint.replica.clone(),
            );
        });
        assert!(
            forged.contains("is not signed by the audit key of epoch 2"),
            "{forged}"
        );
        let removed = reason(&|b| {
            b.keys.remove(1);
        });
        assert!(
            removed.contains(
                "key hand-over 2: expected audit key epoch 1, found 2: a hand-over was removed"
            ),
            "{removed}"
        );
        let last_removed = reason(&|b| {
            b.keys.pop();
        });
        assert!(
            last_removed.contains("names key epoch 2, but no key of that epoch"),
            "{last_removed}"
        );
        let replaced = reason(&|b| b.keys[2].public_key = forger.public().to_base64());
        assert!(
            replaced.contains("key hand-over 3 (to epoch 2) is not signed by the key of epoch 1"),
            "{replaced}"
        );
        let (other, _) = AuditSigner::generate(0).unwrap();
        let wrong_pin = refused(ProofBundle::Inclusion(good.clone()), &other.public());
        assert!(wrong_pin.contains("not the pinned key"), "{wrong_pin}");
        let none = reason(&|b| b.keys.clear());
        assert!(none.contains("holds no key hand-over"), "{none}");
    }

    #[tokio::test]
    async fn a_restarted_root_key_is_accepted_with_a_warning_only_with_a_reason() {
        let dir = three_epochs().await;
        let key = pinned(dir.path());
        let good = inclusion(prove_inclusion(dir.path(), 3, None).unwrap());
        let (restart, _) = AuditSigner::generate(0).unwrap();
        let mut bundle = good.clone();
        bundle.keys.push(Handover {
            epoch: 0,
            public_key: restart.public().to_base64(),
            size: 10,
            root: good.checkpoint.root.clone(),
            head: good.checkpoint.hash.clone(),
            signature: None,
            reason: Some("restored from backup, ticket 42".into()),
        });
        let root = merkle::from_hex(&good.checkpoint.root).unwrap();
        bundle.checkpoint = SignedCheckpoint::sign(
            &restart,
            10,
            good.checkpoint.hash.clone(),
            &root,
            good.checkpoint.time.clone(),
            good.checkpoint.replica.clone(),
        );
        let summary = assert_holds(&ProofBundle::Inclusion(bundle.clone()), &key);
        assert_eq!(summary.warnings.len(), 1);
        assert!(
            summary.warnings[0].contains("restored from backup, ticket 42"),
            "{summary:?}"
        );
        bundle.keys[3].reason = None;
        let refusal = refused(ProofBundle::Inclusion(bundle), &key);
        assert!(
            refusal.contains("without an operator's reason"),
            "{refusal}"
        );
    }

    #[test]
    fn a_bundle_with_an_unknown_field_or_kind_is_refused() {
        let text = r#"{"kind":"consistency","old":{"seq":0,"hash":"00","root":"00","time":"t","replica":"r","epoch":0,"key":"k","signature":"s"},"new":{"seq":0,"hash":"00","root":"00","time":"t","replica":"r","epoch":0,"key":"k","signature":"s"},"proof":[],"keys":[]}"#;
        assert!(ProofBundle::from_json(text.as_bytes()).is_ok(), "control");
        let extra = text.replace(r#""proof":[]"#, r#""proof":[],"note":"trust me""#);
        let error = ProofBundle::from_json(extra.as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `note`"),
            "{error}"
        );
        let kind = text.replace("consistency", "exclusion");
        let error = ProofBundle::from_json(kind.as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("unknown variant `exclusion`"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_old_checkpoint_is_extended_by_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 4).await;
        let old = current(dir.path());
        append_more(dir.path(), 5, 4).await;
        append_more(dir.path(), 9, 2).await;
        let key = pinned(dir.path());
        let good = consistency(prove_consistency(dir.path(), &old).unwrap());
        assert_eq!((good.old.seq, good.new.seq, good.keys.len()), (4, 10, 3));
        let summary = assert_holds(&ProofBundle::Consistency(good.clone()), &key);
        assert_eq!(
            summary.proved,
            Proved::Consistency {
                old_size: 4,
                old_root: old.root.clone()
            }
        );
        // From the current checkpoint itself: nothing to prove, and it holds.
        let same = prove_consistency(dir.path(), &current(dir.path())).unwrap();
        assert_holds(&same, &key);

        let reason = |change: &dyn Fn(&mut ConsistencyBundle)| {
            let mut bundle = good.clone();
            change(&mut bundle);
            refused(ProofBundle::Consistency(bundle), &key)
        };
        let flipped = reason(&|b| {
            let last = b.proof.len() - 1;
            let first = if b.proof[last].starts_with('0') {
                "1"
            } else {
                "0"
            };
            b.proof[last].replace_range(0..1, first);
        });
        assert!(
            flipped.contains("does not lead to the new checkpoint's root"),
            "{flipped}"
        );
        let old_root = reason(&|b| b.old.root = b.new.root.clone());
        assert!(
            old_root.contains("the old checkpoint (size 4) is not signed"),
            "{old_root}"
        );
        let swapped = reason(&|b| std::mem::swap(&mut b.old, &mut b.new));
        assert!(swapped.contains("larger than the new one"), "{swapped}");
        let removed = reason(&|b| {
            b.keys.remove(1);
        });
        assert!(
            removed.contains("expected audit key epoch 1, found 2"),
            "{removed}"
        );
    }

    #[tokio::test]
    async fn a_rewritten_early_record_gets_no_consistency_proof_and_a_forged_one_fails() {
        // One epoch, with a checkpoint kept half-way while the log was open (at a size that
        // is not a power of two, so that the proof carries the old root's own hash).
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for i in 1..=5 {
            log.append(event(i)).await.unwrap();
        }
        let mut checkpoints = log.checkpoints();
        let old = checkpoints
            .wait_for(|c| c.as_ref().is_some_and(|c| c.seq == 5))
            .await
            .unwrap()
            .clone()
            .unwrap();
        for i in 6..=8 {
            log.append(event(i)).await.unwrap();
        }
        log.close().await.unwrap();
        let key = pinned(dir.path());
        let control = prove_consistency(dir.path(), &old).unwrap();
        assert_holds(&control, &key);

        // The insider rewrites record 2, re-links, and re-signs with the key on the host.
        let copy = copy_with_key(dir.path());
        let mut lines = log_lines(copy.path());
        lines[1] = forge(&lines[1], |r| r.event.audience = Some("audience-X".into()));
        relink(&mut lines);
        write_lines(copy.path(), &lines);
        let stolen = AuditSigner::load(&copy.path().join("key").join(KEY_FILE))
            .unwrap()
            .unwrap();
        let root = merkle::root(
            &lines
                .iter()
                .map(|l| merkle::leaf_hash(l.as_bytes()))
                .collect::<Vec<_>>(),
        );
        let head = serde_json::from_str::<AuditRecord>(&lines[7]).unwrap().hash;
        let forged = SignedCheckpoint::sign(
            &stolen,
            8,
            head,
            &root,
            old.time.clone(),
            old.replica.clone(),
        );
        checkpoint::write(&copy.path().join(CHECKPOINT_FILE), &forged).unwrap();
        assert!(
            verify(copy.path()).unwrap().is_intact(),
            "the log alone cannot tell"
        );

        let error = prove_consistency(copy.path(), &old).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("does not verify (line 5 (seq 5): the log up to seq 5 differs"),
            "{error}"
        );
        // The insider builds the bundle anyway: the auditor's check names the rewrite.
        let keys = consistency(control.clone()).keys;
        let bundle = consistency_bundle(copy.path(), &old, forged, keys).unwrap();
        let reason = refused(bundle, &key);
        assert!(
            reason.contains("the log of 8 records does not extend the one of 5 records"),
            "{reason}"
        );
    }

    /// RFC 9162 inclusion checked by python3's hashlib, and the checkpoint's and the
    /// hand-overs' Ed25519 signatures by openssl, over texts python rebuilt from the
    /// documented formats: nothing of this crate checks the bundle.
    #[tokio::test]
    async fn python_and_openssl_check_a_bundle_independently() {
        const SCRIPT: &str = r#"
import base64, hashlib, json, os, sys
bundle = json.load(open(sys.argv[1]))
out = sys.argv[2]
def h(*parts): return hashlib.sha256(b"".join(parts)).digest()
record = bundle["record"].encode()
if json.loads(record)["seq"] != bundle["index"] + 1: sys.exit("seq is not index + 1")
fn, sn, r = bundle["index"], bundle["size"] - 1, h(b"\x00", record)
if fn > sn: sys.exit("index out of range")
for p in bundle["proof"]:
    p = bytes.fromhex(p)
    if sn == 0: sys.exit("proof too long")
    if fn & 1 or fn == sn:
        r = h(b"\x01", p, r)
        while fn & 1 == 0 and fn != 0:
            fn >>= 1; sn >>= 1
    else:
        r = h(b"\x01", r, p)
    fn >>= 1; sn >>= 1
if sn != 0: sys.exit("proof too short")
c = bundle["checkpoint"]
if c["seq"] != bundle["size"]: sys.exit("size")
if r.hex() != c["root"]: sys.exit("root mismatch")
def pem(b64):
    der = bytes.fromhex("302a300506032b6570032100") + base64.b64decode(b64)
    return "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
def write(name, data):
    with open(os.path.join(out, name), "wb") as f: f.write(data)
keys = bundle["keys"]
if keys[-1]["epoch"] != c["epoch"]: sys.exit("the last key is not the checkpoint's")
write("checkpoint.body", ("mayfly audit checkpoint v1\nreplica %s\nsize %d\nroot %s\nhead %s\ntime %s\nepoch %d\n" % (c["replica"], c["seq"], c["root"], c["hash"], c["time"], c["epoch"])).encode())
write("checkpoint.sig", base64.b64decode(c["signature"]))
write("checkpoint.pem", pem(keys[-1]["public_key"]).encode())
for i in range(1, len(keys)):
    k = keys[i]
    write("key%d.body" % i, ("mayfly audit key v1\nepoch %d\nkey %s\nsize %d\nroot %s\nhead %s\n" % (k["epoch"], k["public_key"], k["size"], k["root"], k["head"])).encode())
    write("key%d.sig" % i, base64.b64decode(k["signature"]))
    write("key%d.pem" % i, pem(keys[i - 1]["public_key"]).encode())
print("inclusion ok")
"#;
        let dir = three_epochs().await;
        append_more(dir.path(), 11, 1).await;
        let out = tempfile::tempdir().unwrap();
        let good = prove_inclusion(dir.path(), 6, None).unwrap();
        let keys = good.keys().len();
        assert_eq!(keys, 4);
        let python = |bundle: &ProofBundle| {
            let path = out.path().join("bundle.json");
            std::fs::write(&path, bundle.to_json_pretty().unwrap()).unwrap();
            std::process::Command::new("python3")
                .args(["-c", SCRIPT])
                .arg(&path)
                .arg(out.path())
                .output()
                .expect("python3 runs")
        };
        let openssl = |name: &str| {
            let file = |ext: &str| out.path().join(format!("{name}.{ext}"));
            std::process::Command::new("openssl")
                .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
                .arg(file("pem"))
                .arg("-in")
                .arg(file("body"))
                .arg("-sigfile")
                .arg(file("sig"))
                .output()
                .expect("openssl runs")
        };
        let ran = python(&good);
        assert!(
            ran.status.success(),
            "{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "inclusion ok");
        let mut names = vec!["checkpoint".to_owned()];
        names.extend((1..keys).map(|i| format!("key{i}")));
        for name in &names {
            let checked = openssl(name);
            assert!(
                checked.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&checked.stderr)
            );
        }
        // The bodies python rebuilt are the bytes this crate signs.
        let good_inclusion = inclusion(good.clone());
        assert_eq!(
            std::fs::read_to_string(out.path().join("checkpoint.body")).unwrap(),
            super::super::checkpoint_body(&good_inclusion.checkpoint)
        );
        assert_eq!(
            std::fs::read_to_string(out.path().join("key1.body")).unwrap(),
            handover_body(&good_inclusion.keys[1])
        );

        // Negative controls: the same tools refuse a tampered proof and an edited body.
        let mut tampered = good_inclusion.clone();
        let first = if tampered.proof[1].starts_with('0') {
            "1"
        } else {
            "0"
        };
        tampered.proof[1].replace_range(0..1, first);
        let ran = python(&ProofBundle::Inclusion(tampered));
        assert!(!ran.status.success());
        assert!(String::from_utf8_lossy(&ran.stderr).contains("root mismatch"));
        let mut swapped = good_inclusion;
        swapped.record = log_lines(dir.path())[6].clone();
        swapped.index = 6;
        let ran = python(&ProofBundle::Inclusion(swapped));
        assert!(!ran.status.success());
        assert!(String::from_utf8_lossy(&ran.stderr).contains("root mismatch"));
        let mut moved = inclusion(good);
        moved.checkpoint.time = "2026-01-01T00:00:00.000Z".into();
        std::fs::write(
            out.path().join("checkpoint.body"),
            super::super::checkpoint_body(&moved.checkpoint),
        )
        .unwrap();
        assert!(!openssl("checkpoint").status.success());
    }
}
