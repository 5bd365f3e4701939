//! `checkpoint.json`: the last signed checkpoint, an anchor against truncation and rewriting.
//!
//! The hash chain proves that no record was edited, removed or reordered *between* two
//! records, but cutting records off the end leaves a shorter chain that is still valid, and
//! someone who knows the format can rewrite the records and recompute every hash. The
//! checkpoint remembers where the end was and the Merkle root up to there, signed with the
//! audit key ([`SignedCheckpoint`]), so `verify` can tell both. Logs of earlier versions
//! have an unsigned checkpoint (seq and hash only), read as [`CheckpointState::Legacy`].

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::AuditError;
use super::seal::SignedCheckpoint;

/// File name of the checkpoint inside the audit directory.
pub(super) const CHECKPOINT_FILE: &str = "checkpoint.json";

/// The head of the chain: the last record's seq and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) seq: u64,
    pub(super) hash: String,
}

/// What was found where the checkpoint should be.
#[derive(Debug)]
pub(super) enum CheckpointState {
    Found(SignedCheckpoint),
    /// An unsigned checkpoint, as versions before the audit key wrote them.
    Legacy(Checkpoint),
    Missing,
    /// Present but not a checkpoint.
    Unreadable(String),
}

impl CheckpointState {
    /// The head it names, signed or not.
    pub(super) fn head(&self) -> Option<Checkpoint> {
        match self {
            CheckpointState::Found(signed) => Some(Checkpoint {
                seq: signed.seq,
                hash: signed.hash.clone(),
            }),
            CheckpointState::Legacy(head) => Some(head.clone()),
            CheckpointState::Missing | CheckpointState::Unreadable(_) => None,
        }
    }
}

/// Reads the checkpoint. A missing or garbled file is a state, not an error (`verify`
/// judges it); only I/O failures other than "not found" fail.
pub(super) fn read(dir: &Path) -> Result<CheckpointState, AuditError> {
    read_file(&dir.join(CHECKPOINT_FILE))
}

/// Reads a checkpoint file at any path (an auditor's copy, an anchor).
pub(super) fn read_file(path: &Path) -> Result<CheckpointState, AuditError> {
    match mayfly_sdk::files::read_file_with_limit(path, 64 * 1024) {
        Ok(bytes) => Ok(parse(&bytes)),
        Err(e) if e.is_not_found() => Ok(CheckpointState::Missing),
        Err(e) => Err(AuditError::key(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Reads a signed checkpoint kept elsewhere (an auditor's copy, an anchor).
///
/// # Errors
/// [`AuditError::Key`] if the file cannot be read or holds no signed checkpoint.
pub fn read_checkpoint(path: &Path) -> Result<SignedCheckpoint, AuditError> {
    match read_file(path)? {
        CheckpointState::Found(signed) => Ok(signed),
        CheckpointState::Missing => {
            Err(AuditError::key(format!("{}: no such file", path.display())))
        }
        CheckpointState::Legacy(_) => Err(AuditError::key(format!(
            "{}: an unsigned checkpoint (from a version before the audit key)",
            path.display()
        ))),
        CheckpointState::Unreadable(reason) => Err(AuditError::key(format!(
            "{}: not a signed checkpoint: {reason}",
            path.display()
        ))),
    }
}

/// A signed checkpoint, else a legacy one, else why neither.
pub(super) fn parse(bytes: &[u8]) -> CheckpointState {
    match serde_json::from_slice::<SignedCheckpoint>(bytes) {
        Ok(signed) => CheckpointState::Found(signed),
        Err(signed_error) => match serde_json::from_slice::<LegacyCheckpoint>(bytes) {
            Ok(legacy) => CheckpointState::Legacy(Checkpoint {
                seq: legacy.seq,
                hash: legacy.hash,
            }),
            Err(_) => CheckpointState::Unreadable(signed_error.to_string()),
        },
    }
}

/// The unsigned checkpoint of earlier versions, exactly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyCheckpoint {
    seq: u64,
    hash: String,
}

/// Replaces the checkpoint at `path` atomically and durably (temporary file, fsync,
/// rename, directory fsync), mode 0600. It runs on the checkpoint thread, at most once a
/// second, never on the path of an append: a crash leaves either the old checkpoint or the
/// new one, never an empty file.
pub(super) fn write(path: &Path, checkpoint: &SignedCheckpoint) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(checkpoint).map_err(io::Error::other)?;
    bytes.push(b'\n');
    mayfly_sdk::files::write_secret_atomic(path, &bytes).map_err(io::Error::other)
}

/// Removes the temporary files a crash during an atomic write of `name` in `dir` can leave
/// (`.<name>.<random>.tmp`, and `<name>.tmp` of earlier versions). Called at open, when no
/// write of ours is under way; a file that cannot be removed is left (it is never read).
pub(super) fn remove_stale_temporaries(dir: &Path, name: &str) {
    let _ = fs::remove_file(dir.join(format!("{name}.tmp")));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name.starts_with(&prefix) && file_name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::audit::merkle;
    use crate::audit::seal::AuditSigner;

    fn signed(seq: u64) -> SignedCheckpoint {
        let (signer, _) = AuditSigner::generate(0).unwrap();
        SignedCheckpoint::sign(
            &signer,
            seq,
            "ab".repeat(32),
            &merkle::empty_root(),
            "2026-01-01T00:00:00.000Z".into(),
            "r1".into(),
        )
    }

    #[test]
    fn write_then_read_round_trips_privately() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        assert!(matches!(
            read(dir.path()).unwrap(),
            CheckpointState::Missing
        ));
        let checkpoint = signed(3);
        write(&path, &checkpoint).unwrap();
        write(&path, &checkpoint).unwrap();
        match read(dir.path()).unwrap() {
            CheckpointState::Found(found) => assert_eq!(found, checkpoint),
            other => panic!("{other:?}"),
        }
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn temporaries_a_crash_left_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let keep = [CHECKPOINT_FILE, ".other.json.0123.tmp", "checkpoint.jsonx"];
        let stale = [
            ".checkpoint.json.0123456789abcdef.tmp",
            "checkpoint.json.tmp",
        ];
        for name in keep.iter().chain(&stale) {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_stale_temporaries(dir.path(), CHECKPOINT_FILE);
        for name in keep {
            assert!(dir.path().join(name).exists(), "{name} kept");
        }
        for name in stale {
            assert!(!dir.path().join(name).exists(), "{name} removed");
        }
    }

    #[test]
    fn an_earlier_version_s_checkpoint_reads_as_legacy() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = format!("{{\"seq\":3,\"hash\":\"{}\"}}\n", "cd".repeat(32));
        fs::write(dir.path().join(CHECKPOINT_FILE), legacy).unwrap();
        let state = read(dir.path()).unwrap();
        assert!(
            matches!(&state, CheckpointState::Legacy(head) if head.seq == 3),
            "{state:?}"
        );
        assert_eq!(state.head().unwrap().hash, "cd".repeat(32));
    }

    #[test]
    fn an_empty_or_extended_file_is_unreadable_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        fs::write(&path, b"").unwrap();
        assert!(matches!(
            read(dir.path()).unwrap(),
            CheckpointState::Unreadable(_)
        ));
        // A signed checkpoint with a field added is neither form.
        let mut value = serde_json::to_value(signed(1)).unwrap();
        value["extra"] = serde_json::json!(1);
        fs::write(&path, value.to_string()).unwrap();
        assert!(matches!(
            read(dir.path()).unwrap(),
            CheckpointState::Unreadable(_)
        ));
        assert!(read(dir.path()).unwrap().head().is_none());
    }
}
