//! [`DataDir`]: the layout of a broker's data directory, named in one place.
//!
//! The broker creates it; the CLI finds the admin socket and the trust
//! bundle in it; the load generator starts a broker in a temporary one. Every
//! file name is here, so the three cannot drift apart.
//!
//! ```text
//! <data-dir>/            0700
//!   admin.sock           the admin API (owner only)
//!   bundle.pem           the trust domain's root CAs, for clients to copy
//!   bundle.seq           the bundle's spiffe_sequence
//!   store.redb           the embedded store (unless the store is Redis)
//!   replica-id           this replica's name among several
//!   ca/                  root and intermediate CAs, JWT keys, rotation journal (0600 keys)
//!   audit/               audit.log and checkpoint.json (0600)
//! ```

use std::path::{Path, PathBuf};

/// The data directory when none is configured, relative to the working
/// directory.
pub const DEFAULT_DATA_DIR: &str = "./mayfly-data";

/// A broker's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The admin API's Unix socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("admin.sock")
    }

    /// The trust bundle (PEM root CAs) the broker writes for clients.
    pub fn bundle_pem(&self) -> PathBuf {
        self.root.join(crate::client::BUNDLE_FILE)
    }

    /// The bundle's `spiffe_sequence`, kept across restarts.
    pub fn bundle_sequence(&self) -> PathBuf {
        self.root.join("bundle.seq")
    }

    /// The embedded store's database file.
    pub fn store(&self) -> PathBuf {
        self.root.join("store.redb")
    }

    /// This replica's name.
    pub fn replica_id(&self) -> PathBuf {
        self.root.join("replica-id")
    }

    /// The CA's directory.
    pub fn ca(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// The audit log's directory.
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit")
    }

    /// The audit key's directory, unless configured elsewhere: beside the
    /// log, not in it, so a copy of the log for an auditor holds no key.
    pub fn audit_key(&self) -> PathBuf {
        self.root.join("audit-key")
    }
}

impl Default for DataDir {
    fn default() -> Self {
        DataDir::new(DEFAULT_DATA_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_inside_the_root() {
        let dir = DataDir::new("/var/lib/mayfly");
        for path in [
            dir.admin_socket(),
            dir.bundle_pem(),
            dir.bundle_sequence(),
            dir.store(),
            dir.replica_id(),
            dir.ca(),
            dir.audit(),
        ] {
            assert_eq!(
                path.parent(),
                Some(Path::new("/var/lib/mayfly")),
                "{path:?}"
            );
        }
        assert_eq!(DataDir::default().root(), Path::new("./mayfly-data"));
        assert_eq!(
            DataDir::new("d").admin_socket(),
            Path::new("d").join("admin.sock")
        );
    }
}
