//! Who may open the admin socket: the data directory's owner, root, and — with
//! `[admin] socket_group` — the members of the operators' group.
//!
//! Invariants, and why:
//! - **The kernel says who the peer is.** Every admin call is checked against the uid
//!   (and gid) the kernel reports for the socket's peer (`SO_PEERCRED`), whatever the
//!   socket's mode, so loosening the file's mode never lets anyone else in.
//! - **Group membership is the system's.** A peer is in the group when its gid is the
//!   group's, or the user database lists the group among its user's groups
//!   (`getgrouplist`, so LDAP or sssd groups count too).
//! - **The group can reach the socket, or the server does not start.** A socket handed to
//!   a group inside a directory the group cannot enter would only fail later, for someone
//!   at 3 a.m.

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

/// Who may administer, besides root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminPeers {
    /// The data directory's owner.
    pub owner_uid: u32,
    /// The operators' group, if configured.
    pub group: Option<u32>,
}

/// Why the operators' group cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketGroupError {
    /// No group has this name.
    #[error("[admin] socket_group: no group {0:?} on this system")]
    UnknownGroup(String),
    /// The group database could not be read.
    #[error("[admin] socket_group: cannot look up group {group:?}: {source}")]
    Lookup {
        /// The name.
        group: String,
        /// Why.
        source: nix::Error,
    },
    /// The socket could not be handed to the group.
    #[error("[admin] socket_group: cannot give {path} to gid {gid}: {source}")]
    Chown {
        /// The socket.
        path: String,
        /// The group.
        gid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// A directory on the way to the socket is closed to the group.
    #[error(
        "[admin] socket_group: gid {gid} cannot reach {socket}: directory {dir} (mode {mode:o}) \
         is closed to it; set [admin] socket_path to a directory the group can enter, \
         e.g. /run/mayfly/admin.sock"
    )]
    Unreachable {
        /// The socket.
        socket: String,
        /// The closed directory.
        dir: String,
        /// Its mode.
        mode: u32,
        /// The group.
        gid: u32,
    },
}

/// The gid of `[admin] socket_group`: a numeric gid as it is, a name looked up.
///
/// # Errors
///
/// [`SocketGroupError::UnknownGroup`] or [`SocketGroupError::Lookup`].
pub fn resolve_group(group: &str) -> Result<u32, SocketGroupError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        Ok(None) => Err(SocketGroupError::UnknownGroup(group.to_owned())),
        Err(source) => Err(SocketGroupError::Lookup {
            group: group.to_owned(),
            source,
        }),
    }
}

/// Hands the bound socket at `path` to `gid` (mode 0660) and checks that the group can
/// reach it.
///
/// # Errors
///
/// [`SocketGroupError::Chown`] or [`SocketGroupError::Unreachable`].
pub fn open_to_group(path: &Path, gid: u32) -> Result<(), SocketGroupError> {
    let chown_error = |source| SocketGroupError::Chown {
        path: path.display().to_string(),
        gid,
        source,
    };
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(chown_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(chown_error)?;
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        let others = mode & 0o001 != 0;
        let group = meta.gid() == gid && mode & 0o010 != 0;
        if !others && !group {
            return Err(SocketGroupError::Unreachable {
                socket: path.display().to_string(),
                dir: dir.display().to_string(),
                mode,
                gid,
            });
        }
    }
    Ok(())
}

/// Whether the peer with `uid` and primary `gid` is in group `group`.
fn in_group(uid: u32, gid: u32, group: u32) -> bool {
    if gid == group {
        return true;
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    let Ok(name) = CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .is_ok_and(|groups| groups.contains(&Gid::from_raw(group)))
}

/// The admin socket's interceptor: only the data directory's owner, root and members of
/// the operators' group may administer.
pub fn admin_peer_check(
    peers: AdminPeers,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        let cred = request
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred);
        let Some(cred) = cred else {
            return Err(Status::permission_denied(
                "cannot identify the admin socket's peer",
            ));
        };
        let uid = cred.uid();
        if uid == peers.owner_uid || uid == 0 {
            return Ok(request);
        }
        match peers.group {
            Some(group) if in_group(uid, cred.gid(), group) => Ok(request),
            Some(group) => Err(Status::permission_denied(format!(
                "uid {uid} may not administer this broker (only uid {}, root or members of \
                 gid {group})",
                peers.owner_uid
            ))),
            None => Err(Status::permission_denied(format!(
                "uid {uid} may not administer this broker (only uid {} or root)",
                peers.owner_uid
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_a_gid_or_a_known_name() {
        assert_eq!(resolve_group("2000").unwrap(), 2000);
        assert_eq!(resolve_group("root").unwrap(), 0, "in every group database");
        assert!(matches!(
            resolve_group("no-such-group-mayfly"),
            Err(SocketGroupError::UnknownGroup(_))
        ));
    }

    #[test]
    fn the_group_must_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        // The temporary directory itself may be private: open the way down.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o711)).unwrap();
        let socket = open.join("admin.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let reachable = open_to_group(&socket, 2000);
        assert!(reachable.is_ok(), "{reachable:?}");
        let meta = std::fs::metadata(&socket).unwrap();
        assert_eq!(meta.gid(), 2000);
        assert_eq!(meta.mode() & 0o777, 0o660);

        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let socket = private.join("admin.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let error = open_to_group(&socket, 2000).unwrap_err().to_string();
        assert!(
            error.contains(&private.display().to_string()) && error.contains("socket_path"),
            "{error}"
        );
    }
}
