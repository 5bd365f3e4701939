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
use super::merkle::{self, Hash};
use super::seal::{AuditPublicKey, Handover, SignedCheckpoint};
use super::verify::{BreakKind, ChainBreak};

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
        let pins_this_tree = self.at.get(&handover.size).is_some_and(|(root, head)| {
            merkle::to_hex(root) == handover.root && *head == handover.head
        });
        if !pins_this_tree {
            return Err(BreakKind::HandoverMismatch {
                epoch: handover.epoch,
                since: trusted_since,
            });
        }
        match (handover.epoch, self.epochs.last()) {
            (0, None) => {
                if handover.signature.is_some() {
                    return Err(BreakKind::KeyRecord {
                        problem: "a root key (epoch 0) carries no signature".into(),
                    });
                }
                if let Some(pinned) = pinned
                    && pinned != key
                {
                    return Err(BreakKind::UnpinnedKey {
                        found: key.id(),
                        pinned: pinned.id(),
                    });
                }
            }
            (0, Some(_)) => {
                let Some(reason) = &handover.reason else {
                    return Err(BreakKind::KeyRecord {
                        problem: "a new root key over an existing chain without the \
                                  operator's reason"
                            .into(),
                    });
                };
                self.notes.push(format!(
                    "at seq {}: the key chain restarts with root key {} (an operator \
                     accepted: {reason}); what follows is signed by that key, not the one \
                     before",
                    handover.size,
                    key.id()
                ));
            }
            (epoch, None) => {
                return Err(BreakKind::EpochOutOfOrder {
                    expected: 0,
                    found: epoch,
                });
            }
            (epoch, Some(current)) => {
                if epoch != current.epoch + 1 {
                    return Err(BreakKind::EpochOutOfOrder {
                        expected: current.epoch + 1,
                        found: epoch,
                    });
                }
                if !handover.verifies_with(&current.key) {
                    return Err(BreakKind::HandoverSignature {
                        epoch,
                        since: trusted_since,
                    });
                }
            }
        }
        self.epochs.push(KeyEpoch {
            epoch: handover.epoch,
            key,
            from_size: handover.size,
            handover: handover.clone(),
        });
        Ok(())
    }

    /// Whether the key of `epoch` may sign a checkpoint of `size` records: from the size
    /// it took over at up to the size its successor took over at (the last checkpoint an
    /// old key signs can share its size with the hand-over).
    fn key_for(&self, epoch: u64, size: u64) -> Option<&KeyEpoch> {
        let position = self
            .epochs
            .iter()
            .rposition(|key| key.epoch == epoch && key.from_size <= size)?;
        let until = self
            .epochs
            .get(position + 1)
            .map_or(u64::MAX, |next| next.from_size);
        let key = self.epochs.get(position)?;
        (size <= until).then_some(key)
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
        let matches = self.at.get(&checkpoint.seq).is_some_and(|(root, head)| {
            merkle::to_hex(root) == checkpoint.root && *head == checkpoint.hash
        });
        (!matches).then_some(BreakKind::CheckpointMismatch {
            seq: checkpoint.seq,
        })
    }
}
