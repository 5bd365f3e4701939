//! The audit files are readable by the broker's user alone.
//!
//! `audit.log` names every identity, owner and audience the broker dealt with, and
//! `checkpoint.json` sits next to it; neither is anyone else's business. Both are created with
//! mode 0600 (the umask can only take bits away from that). A log that already exists with a
//! wider mode, as earlier versions created it (0644), is narrowed to 0600 when the log is
//! opened, with a log line, rather than refused: refusing would stop the broker over a
//! condition it can fix itself. The checkpoint needs no such step: every write replaces it
//! with a new 0600 file, and the log's open writes one.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// The mode of every audit file: read and write for the owner, nothing for anyone else.
pub(super) const FILE_MODE: u32 = 0o600;

/// The mode of an audit directory this module creates.
const DIR_MODE: u32 = 0o700;

/// Options that create a file with [`FILE_MODE`]; an existing file keeps its mode (see
/// [`restrict`]).
pub(super) fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Creates `dir` and its missing parents with mode 0700; an existing directory is left as it
/// is (the broker's data directory above it is already private).
pub(super) fn create_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Narrows `file` to [`FILE_MODE`] if its group or others have any access to it. Returns the
/// mode it had when it was narrowed, `None` when it was already private.
///
/// Works on the open file, so the file changed is the file written.
pub(super) fn restrict(file: &File) -> io::Result<Option<u32>> {
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(Some(mode))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_files_are_private_and_open_ones_are_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let file = options().write(true).create(true).open(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(restrict(&file).unwrap(), None, "already private");

        for wide in [0o644, 0o640, 0o604, 0o660, 0o666] {
            std::fs::set_permissions(&path, Permissions::from_mode(wide)).unwrap();
            let file = options().write(true).create(true).open(&path).unwrap();
            assert_eq!(
                mode_of(&path),
                wide,
                "opening does not change an existing file"
            );
            assert_eq!(restrict(&file).unwrap(), Some(wide), "{wide:o}");
            assert_eq!(mode_of(&path), 0o600, "{wide:o}");
        }
        // A mode narrower than 0600 has nothing to give away and is left alone.
        std::fs::set_permissions(&path, Permissions::from_mode(0o400)).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(restrict(&file).unwrap(), None);
        assert_eq!(mode_of(&path), 0o400);
    }

    #[test]
    fn new_directories_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("audit");
        create_dir_all(&nested).unwrap();
        assert_eq!(mode_of(&nested), 0o700);
        create_dir_all(&nested).unwrap();
    }
}
