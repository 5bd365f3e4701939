//! `checkpoint.json`: the last committed seq and hash, an anchor against truncation.
//!
//! The hash chain proves that no record was edited, removed or reordered *between* two
//! records, but cutting records off the end leaves a shorter chain that is still valid. The
//! checkpoint remembers where the end was, so `verify` can tell.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{AuditError, private};

/// File name of the checkpoint inside the audit directory.
pub(super) const CHECKPOINT_FILE: &str = "checkpoint.json";
const CHECKPOINT_TMP: &str = "checkpoint.json.tmp";

/// The head of the chain as of the last commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) seq: u64,
    pub(super) hash: String,
}

/// What was found where the checkpoint should be.
#[derive(Debug)]
pub(super) enum CheckpointState {
    Found(Checkpoint),
    Missing,
    /// Present but unreadable: without an fsync, a crash can leave it empty (see `write`).
    Unreadable(String),
}

/// Reads the checkpoint. A missing or garbled file is a state, not an error, because both
/// follow from a crash or a fresh directory; only I/O failures other than "not found" fail.
pub(super) fn read(dir: &Path) -> Result<CheckpointState, AuditError> {
    let path = dir.join(CHECKPOINT_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(match serde_json::from_slice(&bytes) {
            Ok(checkpoint) => CheckpointState::Found(checkpoint),
            Err(e) => CheckpointState::Unreadable(e.to_string()),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(CheckpointState::Missing),
        Err(e) => Err(AuditError::io("read", path, e)),
    }
}

/// Replaces the checkpoint atomically (temp file, then rename). The temporary file is mode
/// 0600 before anything is written to it, so the checkpoint it becomes is too.
///
/// Deliberately without fsync: the checkpoint is a tamper-evidence anchor, not data. The log
/// itself is the durable copy and was fdatasync'd before this is called, so the checkpoint
/// can only ever name a record that is already on disk. A crash may leave an older checkpoint
/// (harmless: it names an earlier record, which is still there) or an empty one (reported by
/// `verify` as a note, and rewritten at the next open). Syncing it would double the fsyncs on
/// the request path for no gain in durability.
pub(super) fn write(dir: &Path, checkpoint: &Checkpoint) -> io::Result<()> {
    let tmp = dir.join(CHECKPOINT_TMP);
    let mut bytes = serde_json::to_vec(checkpoint).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let mut file = private::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    // A temporary file left by a crash of an earlier version may be 0644, and opening an
    // existing file keeps its mode.
    private::restrict(&file)?;
    file.write_all(&bytes)?;
    drop(file);
    fs::rename(&tmp, dir.join(CHECKPOINT_FILE))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(dir.path()).unwrap(),
            CheckpointState::Missing
        ));
        let checkpoint = Checkpoint {
            seq: 3,
            hash: "ab".repeat(32),
        };
        write(dir.path(), &checkpoint).unwrap();
        write(dir.path(), &checkpoint).unwrap();
        match read(dir.path()).unwrap() {
            CheckpointState::Found(found) => assert_eq!(found, checkpoint),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join(CHECKPOINT_TMP).exists());
    }

    #[test]
    fn the_checkpoint_and_its_temporary_file_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode_of = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        let checkpoint = Checkpoint {
            seq: 1,
            hash: "cd".repeat(32),
        };
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &checkpoint).unwrap();
        assert_eq!(mode_of(&dir.path().join(CHECKPOINT_FILE)), 0o600);

        // What an earlier version left: a 0644 checkpoint and a 0644 temporary file.
        let dir = tempfile::tempdir().unwrap();
        for name in [CHECKPOINT_FILE, CHECKPOINT_TMP] {
            let path = dir.path().join(name);
            fs::write(&path, b"{}").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(mode_of(&path), 0o644);
        }
        write(dir.path(), &checkpoint).unwrap();
        assert_eq!(mode_of(&dir.path().join(CHECKPOINT_FILE)), 0o600);
        assert!(matches!(
            read(dir.path()).unwrap(),
            CheckpointState::Found(found) if found == checkpoint
        ));
    }

    #[test]
    fn empty_file_is_unreadable_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CHECKPOINT_FILE), b"").unwrap();
        assert!(matches!(
            read(dir.path()).unwrap(),
            CheckpointState::Unreadable(_)
        ));
    }
}
