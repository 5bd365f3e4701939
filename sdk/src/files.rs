//! Atomic, permission-checked files for keys, certificates and SVIDs: the one
//! implementation the CA, the broker, the agent and the CLI write and read them with.
//!
//! Writes go to a temporary file in the destination's directory, created with the final
//! mode from the start, flushed to disk, renamed over the destination, and the directory
//! is flushed too, so a crash leaves either the old file or the new one, never a torn or
//! briefly world-readable one.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// A file-system operation failed.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What we were doing ("open", "write", "rename", ...).
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A secret file is readable or writable by group or others; it must be `0600`.
    #[error(
        "key file {} has mode {mode:o}; it must not be accessible by group or others (chmod 600)",
        path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is something else than a regular file (a directory, a device, ...).
    #[error("{} is not a regular file", path.display())]
    NotARegularFile {
        /// The path.
        path: PathBuf,
    },
    /// The file is larger than its limit; it was not read.
    #[error("{} is {len} bytes; at most {max} are expected", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
}

impl FileError {
    fn io(operation: &'static str, path: &Path, source: std::io::Error) -> Self {
        FileError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the file (or a directory above it) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Mode of files holding private keys.
pub const SECRET_FILE_MODE: u32 = 0o600;
/// Mode of files holding certificates.
pub const PUBLIC_FILE_MODE: u32 = 0o644;
/// Mode of the directory holding the CA.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// No key, certificate or SVID file comes close; larger files are refused before reading.
pub const MAX_FILE_LEN: u64 = 64 * 1024;

/// Writes `bytes` to `path` atomically with mode `0600`.
///
/// # Errors
/// [`FileError::Io`] if the temporary file cannot be created, written, flushed or renamed.
pub fn write_secret_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic(path, bytes, SECRET_FILE_MODE)
}

/// Writes `bytes` to `path` atomically with mode `0644`.
///
/// # Errors
/// [`FileError::Io`] if the temporary file cannot be created, written, flushed or renamed.
pub fn write_public_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic(path, bytes, PUBLIC_FILE_MODE)
}

/// Reads a secret file, refusing it if group or others have any access to it.
///
/// The mode is checked on the opened file, so the file checked is the file read.
///
/// # Errors
/// [`FileError::TooOpen`] if `mode & 0o077 != 0`; [`FileError::NotARegularFile`];
/// [`FileError::TooLarge`] above [`MAX_FILE_LEN`]; [`FileError::Io`].
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let file = File::open(path).map_err(|e| FileError::io("open", path, e))?;
    let metadata = checked_metadata(&file, path, MAX_FILE_LEN)?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    // Sized up front so reading never reallocates and leaves an unzeroized copy behind.
    let mut buffer = Zeroizing::new(Vec::with_capacity(capacity_for(metadata.len())));
    read_limited(file, path, &mut buffer, MAX_FILE_LEN)?;
    Ok(buffer)
}

/// Reads a public file (a certificate), refusing anything larger than [`MAX_FILE_LEN`].
///
/// # Errors
/// [`FileError::NotARegularFile`]; [`FileError::TooLarge`]; [`FileError::Io`].
pub fn read_public_file(path: &Path) -> Result<Vec<u8>, FileError> {
    read_file_with_limit(path, MAX_FILE_LEN)
}

/// Reads a regular file of at most `max` bytes (the CA's rotation journal, which may outgrow
/// [`MAX_FILE_LEN`]).
///
/// # Errors
/// [`FileError::NotARegularFile`]; [`FileError::TooLarge`]; [`FileError::Io`].
pub fn read_file_with_limit(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let file = File::open(path).map_err(|e| FileError::io("open", path, e))?;
    let metadata = checked_metadata(&file, path, max)?;
    let mut buffer = Vec::with_capacity(capacity_for(metadata.len()));
    read_limited(file, path, &mut buffer, max)?;
    Ok(buffer)
}

/// Creates `path` and its missing parents with mode `0700`.
///
/// An existing directory is left as it is.
///
/// # Errors
/// [`FileError::Io`] if the directory cannot be created or `path` exists and is not one.
pub fn ensure_private_dir(path: &Path) -> Result<(), FileError> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)
        .map_err(|e| FileError::io("create directory", path, e))
}

/// Whether `path` exists; a dangling symlink counts as existing so that it is not overwritten
/// silently.
///
/// # Errors
/// [`FileError::Io`] when it cannot be told.
pub fn exists(path: &Path) -> Result<bool, FileError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FileError::io("stat", path, e)),
    }
}

/// Removes `path` if it exists; a file already gone is not an error.
///
/// # Errors
/// [`FileError::Io`].
pub fn remove_if_exists(path: &Path) -> Result<(), FileError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::io("remove", path, e)),
    }
}

/// The opened file's metadata, after checking it is a regular file within the size limit.
fn checked_metadata(file: &File, path: &Path, max: u64) -> Result<fs::Metadata, FileError> {
    let metadata = file
        .metadata()
        .map_err(|e| FileError::io("stat", path, e))?;
    if !metadata.is_file() {
        return Err(FileError::NotARegularFile {
            path: path.to_path_buf(),
        });
    }
    if metadata.len() > max {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len: metadata.len(),
            max,
        });
    }
    Ok(metadata)
}

fn capacity_for(len: u64) -> usize {
    // `len` is at most the read limit (1 MiB at most), so it fits any usize; one spare byte lets
    // read_to_end see end-of-file without growing the buffer.
    usize::try_from(len).unwrap_or(0).saturating_add(1)
}

fn read_limited(file: File, path: &Path, buffer: &mut Vec<u8>, max: u64) -> Result<(), FileError> {
    // The file may grow between stat and read; never read more than the limit.
    file.take(max + 1)
        .read_to_end(buffer)
        .map_err(|e| FileError::io("read", path, e))?;
    let len = buffer.len() as u64;
    if len > max {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len,
            max,
        });
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let directory = parent_dir(path);
    let temporary = temporary_path(path, &directory)?;
    let result = write_new_file(&temporary, bytes, mode)
        .and_then(|()| fs::rename(&temporary, path).map_err(|e| FileError::io("rename", path, e)));
    if result.is_err() {
        // Best effort: the temporary file is useless once the write failed.
        let _ = fs::remove_file(&temporary);
        return result;
    }
    // The rename is durable only once the directory entry is on disk.
    File::open(&directory)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| FileError::io("sync directory", &directory, e))
}

fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    // create_new (O_EXCL) refuses an existing file or symlink at the temporary name.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| FileError::io("create", path, e))?;
    // The umask may have taken bits away from `mode`; set exactly what was asked.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| FileError::io("chmod", path, e))?;
    file.write_all(bytes)
        .map_err(|e| FileError::io("write", path, e))?;
    file.sync_all().map_err(|e| FileError::io("sync", path, e))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temporary_path(path: &Path, directory: &Path) -> Result<PathBuf, FileError> {
    let Some(name) = path.file_name() else {
        return Err(FileError::io(
            "write",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
        ));
    };
    let mut suffix = [0u8; 8];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| {
        FileError::io(
            "name a temporary file for",
            path,
            std::io::Error::other("the system's random generator failed"),
        )
    })?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{:016x}.tmp", u64::from_le_bytes(suffix)));
    Ok(directory.join(temporary_name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn secret_files_are_0600_and_public_files_0644() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("a.key");
        let public = dir.path().join("a.crt");
        write_secret_atomic(&secret, b"secret").unwrap();
        write_public_atomic(&public, b"public").unwrap();
        assert_eq!(mode_of(&secret), 0o600);
        assert_eq!(mode_of(&public), 0o644);
        assert_eq!(&*read_secret_file(&secret).unwrap(), b"secret");
        assert_eq!(read_public_file(&public).unwrap(), b"public");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.key");
        write_secret_atomic(&path, b"one").unwrap();
        write_secret_atomic(&path, b"two").unwrap();
        assert_eq!(&*read_secret_file(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.key")]);
    }

    #[test]
    fn open_secret_files_are_refused_next_to_a_closed_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_secret_atomic(&path, b"k").unwrap();
        assert!(read_secret_file(&path).is_ok());
        for mode in [0o640, 0o604, 0o644, 0o660] {
            fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
            match read_secret_file(&path) {
                Err(FileError::TooOpen { mode: found, .. }) => assert_eq!(found, mode),
                other => panic!("mode {mode:o}: expected KeyFileTooOpen, got {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_and_non_regular_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        write_secret_atomic(&big, &vec![b'a'; MAX_FILE_LEN as usize + 1]).unwrap();
        assert!(matches!(
            read_secret_file(&big),
            Err(FileError::TooLarge { .. })
        ));
        assert!(matches!(
            read_public_file(dir.path()),
            Err(FileError::NotARegularFile { .. })
        ));
    }

    #[test]
    fn private_dir_is_created_0700() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("data").join("ca");
        ensure_private_dir(&nested).unwrap();
        assert_eq!(mode_of(&nested), 0o700);
        // Idempotent.
        ensure_private_dir(&nested).unwrap();
    }
}
