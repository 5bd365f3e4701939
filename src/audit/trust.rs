//! `keys.jsonl`, the audit key's chain of hand-overs, followed against the log; and signed
//! checkpoints judged by it.
//!
//! Each line of `keys.jsonl` is a [`Handover`]: a key, the epoch it signs for, and the tree
//! (size, Merkle root, head hash) as it was when the key took over, signed by the key
//! before it. [`Facts::follow`] checks every hand-over against the tree the scan computed
//! at its size and against the key before it. [`Facts::judge`] then checks a signed
//! checkpoint (the log's own, an anchor, or one an auditor kept) against the key in force
//! at its size and the root at that size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::path::Path;

use super::AuditError;
use super::breaks::{BreakKind, ChainBreak};
use super::merkle::{self, Hash};
use super::seal::{AuditPublicKey, Handover, SignedCheckpoint};

/// File name of the key chain inside the audit directory.
pub(super) const KEYS_FILE: &str = "keys.jsonl";

/// The most hand-overs read (one an hour for more than a century).
const MAX_HANDOVERS: usize = 1 << 20;

/// One key of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEpoch {
    /// The epoch it signs for.
    pub epoch: u64,
    /// Its public key.
    pub key: AuditPublicKey,
    /// The tree size at which it took over: it signs checkpoints from this size on.
    pub from_size: u64,
    /// The hand-over as recorded.
    pub handover: Handover,
}

/// The hand-overs of `keys.jsonl`, and the bytes up to the last complete line (a final
/// line without newline is a hand-over a crash interrupted, which never took effect).
#[derive(Debug, Default)]
pub(super) struct KeysFile {
    pub(super) handovers: Vec<Handover>,
    pub(super) good_len: u64,
    pub(super) torn: bool,
}

/// Reads `keys.jsonl` in `dir`; an absent file holds no hand-over.
pub(super) fn read_keys(dir: &Path) -> Result<KeysFile, AuditError> {
    let path = dir.join(KEYS_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(KeysFile::default()),
        Err(e) => return Err(AuditError::io("open", path, e)),
    };
    let mut reader = BufReader::new(file);
    let mut keys = KeysFile::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io("read", &path, e))?;
        if n == 0 {
            break;
        }
        let Some(complete) = line.strip_suffix(b"\n") else {
            keys.torn = true;
            break;
        };
        if keys.handovers.len() >= MAX_HANDOVERS {
            return Err(AuditError::key(format!(
                "{} holds more than {MAX_HANDOVERS} hand-overs",
                path.display()
            )));
        }
        let handover: Handover = serde_json::from_slice(complete).map_err(|e| {
            AuditError::key(format!(
                "{} line {}: not a key hand-over: {e}",
                path.display(),
                keys.handovers.len() + 1
            ))
        })?;
        keys.handovers.push(handover);
        keys.good_len += n as u64;
    }
    Ok(keys)
}

/// Appends one hand-over to `keys.jsonl` and syncs it (mode 0600 when created). `good_len`
/// cuts off a torn line first.
pub(super) fn append_key(dir: &Path, handover: &Handover, good_len: u64) -> io::Result<u64> {
    let path = dir.join(KEYS_FILE);
    let mut file = super::private::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    file.set_len(good_len)?;
    let mut line = serde_json::to_vec(handover).map_err(io::Error::other)?;
    line.push(b'\n');
    use std::io::Seek as _;
    file.seek(io::SeekFrom::Start(good_len))?;
    file.write_all(&line)?;
    file.sync_data()?;
    if good_len == 0 {
        // A new file's directory entry must be durable too.
        File::open(dir).and_then(|d| d.sync_all())?;
    }
    Ok(good_len + line.len() as u64)
}

/// What a scan learned that the key chain and checkpoints are judged by.
#[derive(Debug, Default)]
pub(super) struct Facts {
    /// The keys that verified, in order.
    pub(super) epochs: Vec<KeyEpoch>,
    /// Restarts of the chain an operator accepted, and other things to know.
    pub(super) notes: Vec<String>,
    /// Records in the log.
    pub(super) size: u64,
    /// Records removed by retention: the trees of smaller sizes cannot be recomputed, so
    /// what hand-overs and checkpoints say of them is taken on their signatures alone.
    pub(super) start: u64,
    /// The root and head hash at each size a hand-over or checkpoint names.
    pub(super) at: BTreeMap<u64, (Hash, String)>,
}

impl Facts {
    /// Follows the hand-overs from the first (a root key, pinned to `pinned` when given),
    /// each against the tree at its size and the key before it. Stops at the first that
    /// does not hold; the keys before it stay in `epochs`.
    pub(super) fn follow(
        &mut self,
        handovers: &[Handover],
        pinned: Option<AuditPublicKey>,
    ) -> Option<ChainBreak> {
        let mut trusted_since = 0;
        for handover in handovers {
            if let Err(kind) = self.admit(handover, pinned, trusted_since) {
                return Some(ChainBreak {
                    file: None,
                    line: handover.size.min(self.size.saturating_add(1)),
                    seq: (handover.size <= self.size).then_some(handover.size),
                    kind,
                });
            }
            trusted_since = handover.size;
        }
        None
    }

    fn admit(
        &mut self,
        handover: &Handover,
        pinned: Option<AuditPublicKey>,
        trusted_since: u64,
    ) -> Result<(), BreakKind> {
        let key = handover.key().map_err(|e| BreakKind::KeyRecord {
            problem: e.to_string(),
        })?;
        if handover.size > self.size {
            return Err(BreakKind::Truncated {
                checkpoint_seq: handover.size,
                last_seq: self.size,
            });
        }
        let pins_this_tree = handover.size < self.start
            || self.at.get(&handover.size).is_some_and(|(root, head)| {
                merkle::to_hex(root) == handover.root && *head == handover.head
            });
        if !pins_this_tree {
            return Err(BreakKind::HandoverMismatch {
                epoch: handover.epoch,
                since: trusted_since,
            });
        }
        let restart = follows(handover, &key, self.epochs.last(), pinned, trusted_since)?;
        if let Some(reason) = restart {
            self.notes.push(format!(
                "at seq {}: the key chain restarts with root key {} (an operator \
                 accepted: {reason}); what follows is signed by that key, not the one \
                 before",
                handover.size,
                key.id()
            ));
        }
        self.epochs.push(KeyEpoch {
            epoch: handover.epoch,
            key,
            from_size: handover.size,
            handover: handover.clone(),
        });
        Ok(())
    }

    /// The key of `epoch` that may sign a checkpoint of `size` records (see
    /// [`signing_position`]).
    fn key_for(&self, epoch: u64, size: u64) -> Option<&KeyEpoch> {
        signing_position(&self.epochs, epoch, size).and_then(|position| self.epochs.get(position))
    }

    /// Why `checkpoint` does not vouch for this log, if it does not: `None` when its key
    /// signed it and the log at its size is the tree it names.
    pub(super) fn judge(&self, checkpoint: &SignedCheckpoint) -> Option<BreakKind> {
        if checkpoint.seq > self.size {
            return Some(BreakKind::Truncated {
                checkpoint_seq: checkpoint.seq,
                last_seq: self.size,
            });
        }
        let signed = self
            .key_for(checkpoint.epoch, checkpoint.seq)
            .is_some_and(|key| checkpoint.verifies_with(&key.key));
        if !signed {
            return Some(BreakKind::CheckpointSignature {
                seq: checkpoint.seq,
                epoch: checkpoint.epoch,
            });
        }
        let matches = checkpoint.seq < self.start
            || self.at.get(&checkpoint.seq).is_some_and(|(root, head)| {
                merkle::to_hex(root) == checkpoint.root && *head == checkpoint.hash
            });
        (!matches).then_some(BreakKind::CheckpointMismatch {
            seq: checkpoint.seq,
        })
    }
}

/// Where in `epochs` the key of `epoch` is that may sign a checkpoint of `size` records:
/// from the size it took over at up to the size its successor took over at (the last
/// checkpoint an old key signs can share its size with the hand-over). The log's scan, the
/// witness and the proof verifier all judge signatures by this one rule.
pub(super) fn signing_position(epochs: &[KeyEpoch], epoch: u64, size: u64) -> Option<usize> {
    let position = epochs
        .iter()
        .rposition(|key| key.epoch == epoch && key.from_size <= size)?;
    let until = epochs
        .get(position + 1)
        .map_or(u64::MAX, |next| next.from_size);
    (size <= until).then_some(position)
}

/// Whether `handover` (introducing `key`) may follow `current`, the last key of the chain
/// so far: a root key (epoch 0, unsigned, matching `pinned` when given) starts a chain; the
/// next epoch must be signed by the key before it; a new root key over an existing chain
/// needs the operator's reason, which is returned (`Some`) so the caller can tell of it.
/// Only the keys are judged here, not the tree the hand-over pins: the log's own scan
/// ([`Facts::follow`]) checks that, a witness without the log ([`check_foreign`]) cannot.
pub(super) fn follows<'h>(
    handover: &'h Handover,
    key: &AuditPublicKey,
    current: Option<&KeyEpoch>,
    pinned: Option<AuditPublicKey>,
    trusted_since: u64,
) -> Result<Option<&'h str>, BreakKind> {
    match (handover.epoch, current) {
        (0, None) => {
            if handover.signature.is_some() {
                return Err(BreakKind::KeyRecord {
                    problem: "a root key (epoch 0) carries no signature".into(),
                });
            }
            if let Some(pinned) = pinned
                && pinned != *key
            {
                return Err(BreakKind::UnpinnedKey {
                    found: key.id(),
                    pinned: pinned.id(),
                });
            }
            Ok(None)
        }
        (0, Some(_)) => match &handover.reason {
            Some(reason) => Ok(Some(reason)),
            None => Err(BreakKind::KeyRecord {
                problem: "a new root key over an existing chain without the operator's reason"
                    .into(),
            }),
        },
        (epoch, None) => Err(BreakKind::EpochOutOfOrder {
            expected: 0,
            found: epoch,
        }),
        (epoch, Some(current)) => {
            let expected = current.epoch.saturating_add(1);
            if epoch != expected {
                return Err(BreakKind::EpochOutOfOrder {
                    expected,
                    found: epoch,
                });
            }
            if !handover.verifies_with(&current.key) {
                return Err(BreakKind::HandoverSignature {
                    epoch,
                    since: trusted_since,
                });
            }
            Ok(None)
        }
    }
}

/// What a witness outside a replica's host last accepted of that replica's log: the head
/// of its latest signed checkpoint and the key chain that signed it. The next record the
/// replica publishes is judged against it ([`check_foreign`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The checkpoint's tree size (the seq of its last record).
    pub seq: u64,
    /// The Merkle root at that size, hex.
    pub root: String,
    /// The hash of the record at that size (the chain's head).
    pub head: String,
    /// When the replica signed it (RFC 3339, as signed).
    pub time: String,
    /// The key epoch that signed it.
    pub epoch: u64,
    /// The public keys of the key chain, in order, base64, from the root key the witness
    /// first saw (trusted on first use: nothing vouches for a root key but its being there
    /// first).
    pub keys: Vec<String>,
}

impl Seen {
    /// The checkpoint in a few words, for findings and logs.
    pub fn describe(&self) -> String {
        format!(
            "seq {} (root {}, epoch {}, signed {})",
            self.seq,
            short(&self.root),
            self.epoch,
            self.time
        )
    }

    /// The id of the current root key (the last root of the chain) and of the key in force.
    fn chain(&self) -> String {
        let id = |key: Option<&String>| {
            key.and_then(|key| AuditPublicKey::from_base64(key).ok())
                .map_or_else(|| "none".to_owned(), |key| key.id())
        };
        format!(
            "key chain from root key {} to key {} ({} hand-overs)",
            id(self.keys.first()),
            id(self.keys.last()),
            self.keys.len()
        )
    }
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

/// Why a replica's published checkpoint does not continue what a witness saw of it before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessProblem {
    /// A smaller tree than before: the log was rolled back (or an old record replayed).
    #[error("its audit log went backwards: before {before}, now {now}")]
    Regressed {
        /// What was seen before.
        before: String,
        /// What is published now.
        now: String,
    },
    /// Two different trees of one size, both signed: the log was rewritten.
    #[error("its audit log forked: before {before}, now {now}")]
    Forked {
        /// What was seen before.
        before: String,
        /// What is published now.
        now: String,
    },
    /// The checkpoint or a key hand-over does not verify: forged, edited, or of another
    /// replica.
    #[error("its published checkpoint does not verify: {problem}")]
    BadSignature {
        /// What does not verify.
        problem: String,
    },
    /// The key chain is not the one seen before, and no restart hand-over with an
    /// operator's reason explains it.
    #[error(
        "its audit key changed without a restart hand-over carrying a reason: before {before}, now {now}"
    )]
    KeyChanged {
        /// The chain seen before.
        before: String,
        /// The chain published now.
        now: String,
    },
}

impl WitnessProblem {
    /// Every [`kind`](Self::kind), for metrics that start each at zero.
    pub const KINDS: [&'static str; 4] = ["regressed", "forked", "bad_signature", "key_changed"];

    /// A bounded name for metrics and records: `regressed`, `forked`, `bad_signature` or
    /// `key_changed`.
    pub fn kind(&self) -> &'static str {
        match self {
            WitnessProblem::Regressed { .. } => "regressed",
            WitnessProblem::Forked { .. } => "forked",
            WitnessProblem::BadSignature { .. } => "bad_signature",
            WitnessProblem::KeyChanged { .. } => "key_changed",
        }
    }
}

/// Judges another replica's published checkpoint, with the key hand-overs it published,
/// against what was seen of that replica before (`None` the first time), without its log:
///
/// - the hand-overs follow from the first one's root key, each next epoch signed by the key
///   before it, a new root key only with an operator's reason (as in the log's own scan,
///   `Facts::follow`, minus the trees, which only the log can check);
/// - the checkpoint is `replica`'s, signed by the key of its epoch in force at its size,
///   and names the same tree as a hand-over of the same size;
/// - against `previous`: the chain seen before is a prefix of this one, or departs from it
///   only at a restart hand-over with a reason (else [`WitnessProblem::KeyChanged`]); the
///   size is not smaller ([`WitnessProblem::Regressed`]); at the same size, the tree is the
///   same ([`WitnessProblem::Forked`]), as it is at every size a new hand-over pins.
///
/// The root key itself is trusted on first use: the first record a witness sees sets it.
///
/// # Errors
/// The [`WitnessProblem`] found; what was seen before stays what the witness holds.
pub fn check_foreign(
    replica: &str,
    checkpoint: &SignedCheckpoint,
    handovers: &[Handover],
    previous: Option<&Seen>,
) -> Result<Seen, WitnessProblem> {
    let bad = |problem: String| WitnessProblem::BadSignature { problem };
    if handovers.is_empty() {
        return Err(bad(
            "no key hand-over: nothing vouches for the checkpoint".into()
        ));
    }
    if handovers.len() > MAX_HANDOVERS {
        return Err(bad(format!("more than {MAX_HANDOVERS} hand-overs")));
    }
    if checkpoint.replica != replica {
        return Err(bad(format!(
            "the checkpoint is signed for replica {:?}, published as {replica:?}",
            checkpoint.replica
        )));
    }
    let mut facts = Facts::default();
    let mut trusted_since = 0;
    for handover in handovers {
        let key = handover
            .key()
            .map_err(|e| bad(format!("hand-over to epoch {}: {e}", handover.epoch)))?;
        if handover.size < trusted_since {
            return Err(bad(format!(
                "the hand-over to epoch {} is at size {}, before the one preceding it ({trusted_since})",
                handover.epoch, handover.size
            )));
        }
        follows(handover, &key, facts.epochs.last(), None, trusted_since).map_err(|kind| {
            bad(format!(
                "hand-over to epoch {}: {}",
                handover.epoch,
                key_problem(&kind)
            ))
        })?;
        facts.epochs.push(KeyEpoch {
            epoch: handover.epoch,
            key,
            from_size: handover.size,
            handover: handover.clone(),
        });
        trusted_since = handover.size;
    }
    let signed = facts
        .key_for(checkpoint.epoch, checkpoint.seq)
        .is_some_and(|key| checkpoint.verifies_with(&key.key));
    if !signed {
        return Err(bad(format!(
            "the checkpoint of seq {} is not signed by the key of epoch {} in its key chain",
            checkpoint.seq, checkpoint.epoch
        )));
    }
    let seen = Seen {
        seq: checkpoint.seq,
        root: checkpoint.root.clone(),
        head: checkpoint.hash.clone(),
        time: checkpoint.time.clone(),
        epoch: checkpoint.epoch,
        keys: handovers.iter().map(|h| h.public_key.clone()).collect(),
    };
    let pinned_elsewhere = handovers.iter().find(|h| {
        h.size == checkpoint.seq && (h.root != checkpoint.root || h.head != checkpoint.hash)
    });
    if let Some(handover) = pinned_elsewhere {
        return Err(WitnessProblem::Forked {
            before: format!(
                "the hand-over to epoch {} at seq {} (root {})",
                handover.epoch,
                handover.size,
                short(&handover.root)
            ),
            now: seen.describe(),
        });
    }
    let Some(previous) = previous else {
        return Ok(seen);
    };
    let departs = previous
        .keys
        .iter()
        .zip(handovers)
        .position(|(before, now)| *before != now.public_key);
    let restarted = |at: usize| {
        handovers
            .get(at)
            .is_some_and(|h| h.epoch == 0 && h.reason.is_some())
    };
    // One chain is a prefix of the other (`None`), or the new one departs at a restart.
    if departs.is_some_and(|at| !restarted(at)) {
        return Err(WitnessProblem::KeyChanged {
            before: previous.chain(),
            now: seen.chain(),
        });
    }
    if seen.seq < previous.seq {
        return Err(WitnessProblem::Regressed {
            before: previous.describe(),
            now: seen.describe(),
        });
    }
    if handovers.len() < previous.keys.len() {
        // As large a tree as before, under a chain that lost hand-overs: an erased key
        // signing on.
        return Err(WitnessProblem::KeyChanged {
            before: previous.chain(),
            now: seen.chain(),
        });
    }
    let forked_at_previous = (seen.seq == previous.seq
        && (seen.root != previous.root || seen.head != previous.head))
        || handovers.iter().skip(previous.keys.len()).any(|h| {
            h.size == previous.seq && (h.root != previous.root || h.head != previous.head)
        });
    if forked_at_previous {
        return Err(WitnessProblem::Forked {
            before: previous.describe(),
            now: seen.describe(),
        });
    }
    Ok(seen)
}

/// What [`follows`] found wrong, without the log position a [`ChainBreak`] would give (a
/// witness has no log).
fn key_problem(kind: &BreakKind) -> String {
    match kind {
        BreakKind::KeyRecord { problem } => problem.clone(),
        BreakKind::EpochOutOfOrder { expected, found } => {
            format!("expected epoch {expected}, found {found}: a hand-over was removed or replayed")
        }
        BreakKind::HandoverSignature { epoch, .. } => format!(
            "not signed by the key of epoch {}: forged",
            epoch.saturating_sub(1)
        ),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::audit::seal::{AuditSigner, handover_body};

    /// A tree of `size` records, as a checkpoint or hand-over names it: distinct per size
    /// (and per `branch`, for a fork).
    fn tree(size: u64, branch: u8) -> (Hash, String) {
        let mut root = [branch; 32];
        root[..8].copy_from_slice(&size.to_be_bytes());
        (root, format!("{:064x}", size + u64::from(branch) * 1000))
    }

    fn root_key(reason: Option<&str>, size: u64) -> (AuditSigner, Handover) {
        let (signer, _) = AuditSigner::generate(0).unwrap();
        let (root, head) = tree(size, 0);
        let handover = Handover {
            epoch: 0,
            public_key: signer.public().to_base64(),
            size,
            root: merkle::to_hex(&root),
            head,
            signature: None,
            reason: reason.map(str::to_owned),
        };
        (signer, handover)
    }

    fn next_key(current: &AuditSigner, size: u64, branch: u8) -> (AuditSigner, Handover) {
        let (signer, _) = AuditSigner::generate(current.epoch() + 1).unwrap();
        let (root, head) = tree(size, branch);
        let mut handover = Handover {
            epoch: signer.epoch(),
            public_key: signer.public().to_base64(),
            size,
            root: merkle::to_hex(&root),
            head,
            signature: None,
            reason: None,
        };
        handover.signature = Some(current.sign(handover_body(&handover).as_bytes()));
        (signer, handover)
    }

    fn checkpoint(signer: &AuditSigner, seq: u64, branch: u8) -> SignedCheckpoint {
        let (root, head) = tree(seq, branch);
        SignedCheckpoint::sign(
            signer,
            seq,
            head,
            &root,
            "2026-01-01T00:00:00.000Z".into(),
            "r1".into(),
        )
    }

    fn kind(result: Result<Seen, WitnessProblem>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(problem) => problem.kind(),
        }
    }

    #[test]
    fn a_chain_that_moves_forward_is_accepted_and_each_break_is_named() {
        let (k0, h0) = root_key(None, 0);
        let (k1, h1) = next_key(&k0, 7, 0);
        let first = check_foreign(
            "r1",
            &checkpoint(&k0, 5, 0),
            std::slice::from_ref(&h0),
            None,
        )
        .unwrap();
        assert_eq!((first.seq, first.epoch, first.keys.len()), (5, 0, 1));
        // Positive controls: forward, under the next key; and again unchanged.
        let chain = [h0.clone(), h1.clone()];
        let later = check_foreign("r1", &checkpoint(&k1, 9, 0), &chain, Some(&first)).unwrap();
        assert_eq!(later.seq, 9);
        assert_eq!(
            kind(check_foreign(
                "r1",
                &checkpoint(&k1, 9, 0),
                &chain,
                Some(&later)
            )),
            "ok"
        );

        // Back to an older checkpoint of the same replica.
        let older = check_foreign(
            "r1",
            &checkpoint(&k0, 5, 0),
            std::slice::from_ref(&h0),
            Some(&later),
        );
        assert_eq!(kind(older.clone()), "regressed", "{older:?}");
        assert!(older.unwrap_err().to_string().contains("seq 9"));
        // Another tree of the same size, signed by the key in force (a stolen key).
        assert_eq!(
            kind(check_foreign(
                "r1",
                &checkpoint(&k1, 9, 1),
                &chain,
                Some(&later)
            )),
            "forked"
        );
        // Hand-overs out of order.
        let (k2, h2) = next_key(&k1, 5, 1);
        let pinned = [h0.clone(), h1.clone(), h2];
        assert_eq!(
            kind(check_foreign(
                "r1",
                &checkpoint(&k2, 12, 0),
                &pinned,
                Some(&first)
            )),
            "bad_signature",
            "a hand-over at a size before the one preceding it"
        );
        // A new hand-over pinning another tree at the size seen before.
        let (k2, h2) = next_key(&k1, 9, 1);
        let pinned = [h0.clone(), h1.clone(), h2];
        assert_eq!(
            kind(check_foreign(
                "r1",
                &checkpoint(&k2, 12, 0),
                &pinned,
                Some(&later)
            )),
            "forked"
        );
    }

    #[test]
    fn what_does_not_verify_is_a_bad_signature() {
        let (k0, h0) = root_key(None, 0);
        let (k1, h1) = next_key(&k0, 7, 0);
        let good = checkpoint(&k1, 9, 0);
        let chain = [h0.clone(), h1.clone()];
        assert_eq!(
            kind(check_foreign("r1", &good, &chain, None)),
            "ok",
            "control"
        );

        let mut signature = good.signature.clone().into_bytes();
        signature[3] = if signature[3] == b'A' { b'B' } else { b'A' };
        let altered = SignedCheckpoint {
            signature: String::from_utf8(signature).unwrap(),
            ..good.clone()
        };
        assert_eq!(
            kind(check_foreign("r1", &altered, &chain, None)),
            "bad_signature"
        );
        // Published as another replica's.
        assert_eq!(
            kind(check_foreign("r2", &good, &chain, None)),
            "bad_signature"
        );
        // A hand-over not signed by the key before it.
        let (stranger, _) = root_key(None, 0);
        let (k1_forged, h1_forged) = next_key(&stranger, 7, 0);
        let forged = [h0.clone(), h1_forged];
        assert_eq!(
            kind(check_foreign(
                "r1",
                &checkpoint(&k1_forged, 9, 0),
                &forged,
                None
            )),
            "bad_signature"
        );
        // Signed by the previous epoch's key beyond its successor's size.
        assert_eq!(
            kind(check_foreign("r1", &checkpoint(&k0, 9, 0), &chain, None)),
            "bad_signature"
        );
        // No hand-overs at all.
        assert_eq!(kind(check_foreign("r1", &good, &[], None)), "bad_signature");
        // A new root key over the chain without a reason.
        let (k0b, h0b) = root_key(None, 8);
        assert_eq!(
            kind(check_foreign(
                "r1",
                &checkpoint(&k0b, 9, 0),
                &[h0, h1, h0b],
                None
            )),
            "bad_signature"
        );
    }

    #[test]
    fn a_root_key_changes_only_with_a_restart_hand_over_carrying_a_reason() {
        let (k0, h0) = root_key(None, 0);
        let (k1, h1) = next_key(&k0, 7, 0);
        let seen = check_foreign(
            "r1",
            &checkpoint(&k1, 9, 0),
            &[h0.clone(), h1.clone()],
            None,
        )
        .unwrap();
        // Positive control: a restart with the operator's reason continues the chain.
        let (r0, restart) = root_key(Some("restored from backup"), 10);
        let restarted = [h0.clone(), h1.clone(), restart];
        assert_eq!(
            kind(check_foreign(
                "r1",
                &checkpoint(&r0, 12, 0),
                &restarted,
                Some(&seen)
            )),
            "ok"
        );
        // A chain of another root key altogether (a wiped data directory, or a forgery).
        let (x0, other) = root_key(None, 0);
        assert_eq!(
            kind(check_foreign(
                "r1",
                &checkpoint(&x0, 12, 0),
                &[other],
                Some(&seen)
            )),
            "key_changed"
        );
        // A chain that departs from the one seen at a hand-over that is no restart.
        let (y1, departing) = next_key(&k0, 7, 0);
        assert_eq!(
            kind(check_foreign(
                "r1",
                &checkpoint(&y1, 12, 0),
                &[h0.clone(), departing],
                Some(&seen)
            )),
            "key_changed"
        );
        // As large a tree as before under a chain that lost its last hand-over.
        assert_eq!(
            kind(check_foreign(
                "r1",
                &checkpoint(&k0, 9, 0),
                &[h0],
                Some(&seen)
            )),
            "key_changed"
        );
    }
}
