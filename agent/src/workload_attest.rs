//! Attesting a local workload from its Unix socket peer credentials.
//!
//! The agent serves the Workload API on a Unix socket, so the kernel tells it
//! who is on the other end (`SO_PEERCRED`): the effective uid and gid the
//! peer had when it connected, and its pid. [`WorkloadAttestor`] turns those
//! into selectors:
//!
//! | selector | from |
//! |---|---|
//! | `unix:uid:<uid>`, `unix:gid:<gid>` | the socket credentials, always |
//! | `unix:user:<name>`, `unix:group:<name>` | `/etc/passwd`, `/etc/group`, read directly (no NSS) |
//! | `unix:path:<path>` | `readlink /proc/<pid>/exe` |
//! | `unix:sha256:<hex>` | SHA-256 of the file the process executes |
//!
//! ```no_run
//! use mayfly_agent::workload_attest::{PeerCredentials, WorkloadAttestor};
//!
//! # fn demo(cred: &tokio::net::unix::UCred) -> Result<(), Box<dyn std::error::Error>> {
//! let attestor = WorkloadAttestor::new();
//! // Blocking (it may hash an executable): call it from `spawn_blocking`.
//! let selectors = attestor.attest(&PeerCredentials::from_ucred(cred))?;
//! for selector in &selectors {
//!     println!("{selector}");
//! }
//! # Ok(()) }
//! ```
//!
//! # What the PID reuse guard does and does not guarantee
//!
//! The kernel captures the credentials at `connect()`; by the time the agent
//! reads `/proc/<pid>` the pid is only a number, and the process may have
//! exited and the number been given to another one. So the attestor reads
//! the process's start time (which a new process under the same pid cannot
//! share) and its effective uid before and after reading the executable, and
//! the executable's link and inode before and after hashing it. It refuses
//! when the start time moved ([`WorkloadAttestError::ProcessChanged`]), the
//! pid now names a thread rather than a process (likewise), the executable
//! changed (an `exec` during attestation, likewise), or the effective uid is
//! not the socket's ([`WorkloadAttestError::UidMismatch`]).
//!
//! It guarantees that all selectors of one attestation describe one process
//! (one start time) running one executable, with the socket's effective uid.
//!
//! It does **not** guarantee:
//! - that this process is the one that connected. If the peer exited and its
//!   pid was reused by a process of the same user *before the first read*,
//!   the newcomer is attested. Closing that needs the connection time (refuse
//!   a process that started after it) or a pidfd (`SO_PEERPIDFD`, Linux 6.5),
//!   which needs FFI this crate forbids.
//! - that the process still runs what it ran when it connected. `exec` keeps
//!   the pid and the start time, so a process can connect, hand the socket to
//!   a child (fork, `SCM_RIGHTS`) and then exec a binary an entry trusts.
//!   Selectors on executables are only as strong as the rule that untrusted
//!   code cannot keep a socket across such an exec.
//! - anything across mount or pid namespaces: paths are as the agent sees
//!   them, and a peer in a pid namespace the agent cannot see has pid 0,
//!   which is treated as no pid.
//!
//! # Attestations remembered
//!
//! Sidecars call the Workload API many times a second from one process. After a full
//! attestation the attestor opens the process's `/proc/<pid>` directory, checks through
//! it that the start time is still the one attested, and remembers the selectors with
//! that handle and the identity of the executable (device, inode, size, modification
//! and change times). The handle is bound to the process, not to its number: once the
//! process is gone, looking up anything under it fails, even after the pid has been
//! given to another process. [`WorkloadAttestor::attest_remembered`] answers a later
//! call from memory when the socket's uid and gid are the same and a `stat` of `exe`
//! under the handle finds the same unchanged file (so the process lives and has not
//! executed another program): one `stat`, no `/proc` reads, no hashing, no account
//! files. Anything else, or a memory older than
//! [`REMEMBER_FOR`], means a full attestation. So a change to `/etc/passwd` or
//! `/etc/group`, or a process changing its effective uid after it connected, shows in
//! the selectors within [`REMEMBER_FOR`]; the socket's credentials, which the kernel
//! fixed at `connect()`, are checked on every call.
//!
//! `/proc/<pid>` is not compared by owner: its owner is the effective uid
//! only while the process is dumpable (root otherwise), so it would refuse
//! legitimate setuid programs, and `Uid:` in `status` already says the same.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mayfly_sdk::Selector;

/// How many executable digests are remembered. A node runs far fewer
/// distinct binaries than this; the bound only stops a workload that keeps
/// rewriting its executable from growing the cache without end.
const DIGEST_CACHE_CAPACITY: usize = 1024;

/// Executables larger than this are refused rather than hashed, so one
/// workload cannot make the agent read without end.
const MAX_EXECUTABLE_SIZE: u64 = 4 << 30;

/// `/etc/passwd` or `/etc/group` larger than this is refused.
const MAX_ACCOUNT_FILE_SIZE: u64 = 64 << 20;

/// Read size while hashing: large enough to stream at disk speed, small
/// enough that the executable is never held in memory.
const HASH_BUFFER_SIZE: usize = 64 * 1024;

/// How long a full attestation is answered from memory
/// ([`WorkloadAttestor::attest_remembered`]).
pub const REMEMBER_FOR: Duration = Duration::from_secs(10);

/// How many processes' attestations are remembered, each holding its `/proc/<pid>`
/// directory open (one file descriptor). When it is reached, the expired ones go, and if
/// none has, all of them: a node with more processes calling within [`REMEMBER_FOR`]
/// pays full attestations for some, never more descriptors.
const REMEMBERED_CAPACITY: usize = 256;

/// `ESRCH` on Linux: reading a `/proc/<pid>` file of a process that exits
/// mid-read fails with it rather than `ENOENT`.
const ESRCH: i32 = 3;

/// Why a workload could not be attested.
///
/// `ProcessGone`, `ProcessChanged` and `UidMismatch` are about the peer (the
/// request should be refused, and the peer may retry); `ProcUnreadable`,
/// `ProcMalformed` and `AccountDatabaseUnreadable` are about the node the
/// agent runs on (typically permissions or an unusual `/proc`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadAttestError {
    /// The process exited before it could be attested: its `/proc` entry is
    /// gone (or hidden from the agent, as with `hidepid=2`).
    #[error("process {pid} is gone")]
    ProcessGone {
        /// The pid from the socket credentials.
        pid: i32,
    },

    /// The process changed while it was attested: its pid was reused by
    /// another process, or it executed another program.
    #[error("process {pid} changed while it was attested ({what})")]
    ProcessChanged {
        /// The pid from the socket credentials.
        pid: i32,
        /// What changed: `start time`, `thread group`, `executable` or
        /// `executable contents`.
        what: &'static str,
    },

    /// The process's effective uid in `/proc` is not the socket's.
    #[error("process {pid} runs as uid {proc_uid}, but the socket peer is uid {socket_uid}")]
    UidMismatch {
        /// The pid from the socket credentials.
        pid: i32,
        /// The effective uid the socket reported.
        socket_uid: u32,
        /// The effective uid in `/proc/<pid>/status`.
        proc_uid: u32,
    },

    /// The process's executable is larger than the agent will hash.
    #[error("the executable of process {pid} is {size} bytes, more than the limit of {max}")]
    ExecutableTooLarge {
        /// The pid from the socket credentials.
        pid: i32,
        /// The executable's size in bytes.
        size: u64,
        /// The limit in bytes.
        max: u64,
    },

    /// A `/proc/<pid>` file exists but could not be read, most often because
    /// the agent may not inspect another user's process (it needs to run as
    /// root, as the workload's user, or with `CAP_SYS_PTRACE`).
    #[error("cannot read /proc/{pid}/{file}")]
    ProcUnreadable {
        /// The pid from the socket credentials.
        pid: i32,
        /// The file under `/proc/<pid>`: `stat`, `status` or `exe`.
        file: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A `/proc/<pid>` file does not have the format the kernel writes.
    #[error("/proc/{pid}/{file} is malformed: {reason}")]
    ProcMalformed {
        /// The pid from the socket credentials.
        pid: i32,
        /// The file under `/proc/<pid>`.
        file: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// `/etc/passwd` or `/etc/group` exists but could not be read.
    #[error("cannot read {}", path.display())]
    AccountDatabaseUnreadable {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Who is on the other end of a Unix socket, as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    /// The peer's effective uid when it connected.
    pub uid: u32,
    /// The peer's effective gid when it connected.
    pub gid: u32,
    /// The peer's pid, if the platform reports it and the peer is visible in
    /// the agent's pid namespace.
    pub pid: Option<i32>,
}

impl PeerCredentials {
    /// The credentials tonic hands out as `UdsConnectInfo::peer_cred`.
    pub fn from_ucred(cred: &tokio::net::unix::UCred) -> Self {
        PeerCredentials {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        }
    }
}

/// Derives selectors for local workloads from their socket credentials.
///
/// Share one per agent (behind an `Arc`): it caches the parsed account files
/// and the digests of executables it has hashed.
#[derive(Debug)]
pub struct WorkloadAttestor {
    proc: Box<dyn ProcSource>,
    passwd: AccountDatabase,
    group: AccountDatabase,
    digests: Mutex<DigestCache>,
    max_executable_size: u64,
    /// How many files were hashed; tests check that the cache works.
    files_hashed: AtomicU64,
    /// Full attestations by pid, for [`attest_remembered`](Self::attest_remembered).
    remembered: Mutex<HashMap<i32, Remembered>>,
    /// How long one is used; [`REMEMBER_FOR`] but in tests.
    remember_for: Duration,
}

/// One full attestation of a process, and what must still hold to reuse it.
#[derive(Debug, Clone)]
struct Remembered {
    uid: u32,
    gid: u32,
    /// `/proc/<pid>` opened: lookups under it fail once this process is gone.
    process: Arc<File>,
    executable: FileKey,
    selectors: Arc<[Selector]>,
    at: Instant,
}

impl Default for WorkloadAttestor {
    fn default() -> Self {
        WorkloadAttestor::new()
    }
}

impl WorkloadAttestor {
    /// An attestor reading the real `/proc`, `/etc/passwd` and `/etc/group`.
    pub fn new() -> Self {
        WorkloadAttestor::with_roots(PathBuf::from("/proc"), PathBuf::from("/etc"))
    }

    /// An attestor reading `<proc_root>/<pid>/{stat,status,exe}` and
    /// `<etc_root>/{passwd,group}`, for tests and for agents that see the
    /// host through a mount (`/host/proc`).
    pub fn with_roots(proc_root: PathBuf, etc_root: PathBuf) -> Self {
        WorkloadAttestor::with_proc_source(Box::new(RootedProc { root: proc_root }), &etc_root)
    }

    fn with_proc_source(proc: Box<dyn ProcSource>, etc_root: &Path) -> Self {
        WorkloadAttestor {
            proc,
            passwd: AccountDatabase::new(etc_root.join("passwd"), AccountKind::Passwd),
            group: AccountDatabase::new(etc_root.join("group"), AccountKind::Group),
            digests: Mutex::new(DigestCache::new(DIGEST_CACHE_CAPACITY)),
            max_executable_size: MAX_EXECUTABLE_SIZE,
            files_hashed: AtomicU64::new(0),
            remembered: Mutex::new(HashMap::new()),
            remember_for: REMEMBER_FOR,
        }
    }

    /// The selectors of a full attestation of this peer's process made less than
    /// [`REMEMBER_FOR`] ago, if the process is still the one attested and runs the same
    /// unchanged executable (see the [module docs](self#attestations-remembered)).
    /// `None`: attest in full with [`attest`](Self::attest).
    ///
    /// It stats `exe` under the held `/proc/<pid>` directory, which the kernel answers
    /// from memory, so it may be called on an async worker.
    pub fn attest_remembered(&self, peer: &PeerCredentials) -> Option<Arc<[Selector]>> {
        let pid = peer.pid.filter(|pid| *pid > 0)?;
        let known = lock(&self.remembered).get(&pid).cloned()?;
        if (known.uid, known.gid) != (peer.uid, peer.gid) || known.at.elapsed() >= self.remember_for
        {
            return None;
        }
        let executable = self.proc.held_exe_metadata(&known.process).ok()?;
        (FileKey::of(&executable) == known.executable).then_some(known.selectors)
    }

    /// The handle [`Remembered`] keeps: `/proc/<pid>` opened, if the process under it
    /// is still the one attested (its start time, read through the handle).
    fn hold(&self, pid: i32, start_time: u64) -> Option<File> {
        let process = self.proc.open_process(pid).ok()?;
        let stat = self.proc.held_read(&process, "stat").ok()?;
        (parse_start_time(&stat, pid).ok()? == start_time).then_some(process)
    }

    /// Remembers a full attestation of `pid` for [`attest_remembered`](Self::attest_remembered).
    fn remember(&self, pid: i32, remembered: Remembered) {
        let mut map = lock(&self.remembered);
        if map.len() >= REMEMBERED_CAPACITY && !map.contains_key(&pid) {
            map.retain(|_, known| known.at.elapsed() < self.remember_for);
            if map.len() >= REMEMBERED_CAPACITY {
                map.clear();
            }
        }
        map.insert(pid, remembered);
    }

    /// Selectors for the peer, sorted, deduplicated.
    ///
    /// Always `unix:uid` and `unix:gid`; `unix:user` and `unix:group` when
    /// the account files name them; with a pid, `unix:sha256` of the
    /// executable and `unix:path` unless the path cannot be a selector (it
    /// has spaces, as a deleted executable's ` (deleted)` suffix does, is not
    /// ASCII, or is too long).
    ///
    /// This blocks on file I/O and may hash a large executable the first time
    /// it sees it; call it from `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`WorkloadAttestError::ProcessGone`], [`ProcessChanged`] and
    /// [`UidMismatch`] when the process cannot be attested as the socket's
    /// peer (see the [module docs](self)); [`ExecutableTooLarge`];
    /// [`ProcUnreadable`], [`ProcMalformed`] or [`AccountDatabaseUnreadable`]
    /// when the node's files cannot be read.
    ///
    /// [`ProcessChanged`]: WorkloadAttestError::ProcessChanged
    /// [`UidMismatch`]: WorkloadAttestError::UidMismatch
    /// [`ExecutableTooLarge`]: WorkloadAttestError::ExecutableTooLarge
    /// [`ProcUnreadable`]: WorkloadAttestError::ProcUnreadable
    /// [`ProcMalformed`]: WorkloadAttestError::ProcMalformed
    /// [`AccountDatabaseUnreadable`]: WorkloadAttestError::AccountDatabaseUnreadable
    pub fn attest(&self, peer: &PeerCredentials) -> Result<Vec<Selector>, WorkloadAttestError> {
        let mut values = vec![format!("uid:{}", peer.uid), format!("gid:{}", peer.gid)];
        if let Some(name) = self.passwd.name_of(peer.uid)? {
            values.push(format!("user:{name}"));
        }
        if let Some(name) = self.group.name_of(peer.gid)? {
            values.push(format!("group:{name}"));
        }
        let mut process = None;
        match peer.pid {
            // pid 0 is what the kernel reports for a peer in a pid namespace
            // the agent cannot see; negative pids are never valid.
            Some(pid) if pid > 0 => {
                let (executable, start_time) = self.inspect_process(pid, peer.uid)?;
                process = Some((pid, start_time, executable.key));
                values.push(format!("sha256:{}", executable.sha256));
                if let Some(path) = executable
                    .path
                    .to_str()
                    .filter(|_| executable.path.is_absolute())
                {
                    values.push(format!("path:{path}"));
                }
            }
            _ => tracing::warn!(
                uid = peer.uid,
                gid = peer.gid,
                pid = ?peer.pid,
                "socket peer has no usable pid; attesting it by uid and gid only"
            ),
        }
        let mut selectors: Vec<Selector> = values
            .into_iter()
            .filter_map(|value| {
                let value = format!("unix:{value}");
                // Names and paths are whatever the node holds; one that is not
                // a valid selector is left out, which can only make fewer
                // entries match. uid, gid and sha256 are digits and hex, so
                // they always parse.
                Selector::parse(&value)
                    .inspect_err(|_| tracing::debug!(%value, "not a valid selector; left out"))
                    .ok()
            })
            .collect();
        selectors.sort();
        selectors.dedup();
        if let Some((pid, start_time, executable)) = process
            && let Some(process) = self.hold(pid, start_time)
        {
            let remembered = Remembered {
                uid: peer.uid,
                gid: peer.gid,
                process: Arc::new(process),
                executable,
                selectors: Arc::from(selectors.as_slice()),
                at: Instant::now(),
            };
            self.remember(pid, remembered);
        }
        Ok(selectors)
    }

    /// The executable of `pid`, guarded against pid reuse (module docs), and the
    /// process's start time.
    fn inspect_process(
        &self,
        pid: i32,
        socket_uid: u32,
    ) -> Result<(Executable, u64), WorkloadAttestError> {
        let before = self.process_identity(pid)?;
        check_uid(pid, socket_uid, before.effective_uid)?;
        let executable = self.executable(pid)?;
        let after = self.process_identity(pid)?;
        // The start time first: if the pid was reused, that is the cause,
        // and a uid mismatch would only be its symptom.
        if after.start_time != before.start_time {
            return Err(WorkloadAttestError::ProcessChanged {
                pid,
                what: "start time",
            });
        }
        check_uid(pid, socket_uid, after.effective_uid)?;
        Ok((executable, before.start_time))
    }

    fn process_identity(&self, pid: i32) -> Result<ProcessIdentity, WorkloadAttestError> {
        let stat = self
            .proc
            .read(pid, "stat")
            .map_err(|error| proc_error(pid, "stat", error))?;
        let start_time =
            parse_start_time(&stat, pid).map_err(|reason| WorkloadAttestError::ProcMalformed {
                pid,
                file: "stat",
                reason,
            })?;
        let status = self
            .proc
            .read(pid, "status")
            .map_err(|error| proc_error(pid, "status", error))?;
        let malformed = |reason| WorkloadAttestError::ProcMalformed {
            pid,
            file: "status",
            reason,
        };
        let thread_group = status_value(&status, "Tgid")
            .and_then(parse_decimal::<i32>)
            .map_err(malformed)?;
        // SO_PEERCRED reports a process (thread group) id. If the number now
        // names a thread of some other process, /proc/<pid> still resolves,
        // but to that other process: the pid was reused.
        if thread_group != pid {
            return Err(WorkloadAttestError::ProcessChanged {
                pid,
                what: "thread group",
            });
        }
        let uids = status_value(&status, "Uid")
            .and_then(parse_id_quad)
            .map_err(malformed)?;
        Ok(ProcessIdentity {
            start_time,
            // SO_PEERCRED carries the effective uid, so that is what must match.
            effective_uid: uids[1],
        })
    }

    /// The path and digest of what `pid` executes. Both come from the
    /// `/proc/<pid>/exe` link, which names the file the process runs even
    /// when the path has since been replaced or deleted; the link and the
    /// inode are read again afterwards so that an `exec` in between cannot
    /// pair one program's path with another's digest.
    fn executable(&self, pid: i32) -> Result<Executable, WorkloadAttestError> {
        let exe_error = |error| proc_error(pid, "exe", error);
        let path = self.proc.exe_link(pid).map_err(exe_error)?;
        let file = self.proc.open_exe(pid).map_err(exe_error)?;
        let opened = file.metadata().map_err(exe_error)?;
        let sha256 = self.executable_digest(pid, &file, &opened)?;
        let path_after = self.proc.exe_link(pid).map_err(exe_error)?;
        let now = self.proc.exe_metadata(pid).map_err(exe_error)?;
        if path_after != path || (now.dev(), now.ino()) != (opened.dev(), opened.ino()) {
            return Err(WorkloadAttestError::ProcessChanged {
                pid,
                what: "executable",
            });
        }
        Ok(Executable {
            path,
            sha256,
            key: FileKey::of(&opened),
        })
    }

    /// Hex SHA-256 of the opened executable, from the cache when the file's
    /// key says it is the same file, unchanged.
    fn executable_digest(
        &self,
        pid: i32,
        file: &File,
        metadata: &Metadata,
    ) -> Result<String, WorkloadAttestError> {
        if !metadata.is_file() {
            return Err(WorkloadAttestError::ProcMalformed {
                pid,
                file: "exe",
                reason: "not a regular file",
            });
        }
        if metadata.len() > self.max_executable_size {
            return Err(WorkloadAttestError::ExecutableTooLarge {
                pid,
                size: metadata.len(),
                max: self.max_executable_size,
            });
        }
        let key = FileKey::of(metadata);
        if let Some(digest) = lock(&self.digests).get(&key) {
            return Ok(digest);
        }
        // Hashed without the lock: a large binary takes a while and other
        // workloads should not wait for it. Two first requests for the same
        // file both hash it, which is only wasted work.
        let digest = mayfly_sdk::digest::sha256_hex_reader(
            file.take(self.max_executable_size),
            HASH_BUFFER_SIZE,
        )
        .map_err(|error| proc_error(pid, "exe", error))?;
        self.files_hashed.fetch_add(1, Ordering::Relaxed);
        let after = file
            .metadata()
            .map_err(|error| proc_error(pid, "exe", error))?;
        if FileKey::of(&after) != key {
            // Written while we read it: the digest is of no single version.
            return Err(WorkloadAttestError::ProcessChanged {
                pid,
                what: "executable contents",
            });
        }
        lock(&self.digests).insert(key, digest.clone());
        Ok(digest)
    }
}

fn check_uid(pid: i32, socket_uid: u32, proc_uid: u32) -> Result<(), WorkloadAttestError> {
    if proc_uid == socket_uid {
        Ok(())
    } else {
        Err(WorkloadAttestError::UidMismatch {
            pid,
            socket_uid,
            proc_uid,
        })
    }
}

fn proc_error(pid: i32, file: &'static str, source: io::Error) -> WorkloadAttestError {
    if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(ESRCH) {
        WorkloadAttestError::ProcessGone { pid }
    } else {
        WorkloadAttestError::ProcUnreadable { pid, file, source }
    }
}

/// The caches hold whole values that are replaced, never half-updated, so a
/// panic elsewhere while the lock was held leaves nothing inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct Executable {
    path: PathBuf,
    sha256: String,
    /// The file's version, as `stat` of `/proc/<pid>/exe` shows it.
    key: FileKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessIdentity {
    /// Clock ticks after boot; two processes that share a pid differ here.
    start_time: u64,
    effective_uid: u32,
}

/// Where facts about a process come from: the real `/proc`, or in tests a
/// wrapper that changes a file between two reads.
trait ProcSource: std::fmt::Debug + Send + Sync {
    /// `/proc/<pid>/<file>` for `stat` and `status`, as bytes: the command
    /// name in them is whatever the process chose and need not be UTF-8.
    fn read(&self, pid: i32, file: &'static str) -> io::Result<Vec<u8>>;
    /// The target of `/proc/<pid>/exe`.
    fn exe_link(&self, pid: i32) -> io::Result<PathBuf>;
    /// `/proc/<pid>/exe` opened: the file the process executes.
    fn open_exe(&self, pid: i32) -> io::Result<File>;
    /// `/proc/<pid>/exe` stat'ed through the link.
    fn exe_metadata(&self, pid: i32) -> io::Result<Metadata>;
    /// `/proc/<pid>` opened: a handle on the process rather than its number.
    fn open_process(&self, pid: i32) -> io::Result<File>;
    /// A file under a held `/proc/<pid>` (`stat`), through the handle.
    fn held_read(&self, process: &File, file: &'static str) -> io::Result<Vec<u8>> {
        fs::read(held_path(process, file))
    }
    /// `exe` under a held `/proc/<pid>`, stat'ed through the link.
    fn held_exe_metadata(&self, process: &File) -> io::Result<Metadata> {
        fs::metadata(held_path(process, "exe"))
    }
}

/// `name` under the directory `dir` is open on, by its descriptor: the lookup starts at
/// that very directory, whatever its path names now.
fn held_path(dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

#[derive(Debug)]
struct RootedProc {
    root: PathBuf,
}

impl RootedProc {
    fn path(&self, pid: i32, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }
}

impl ProcSource for RootedProc {
    fn read(&self, pid: i32, file: &'static str) -> io::Result<Vec<u8>> {
        fs::read(self.path(pid, file))
    }

    fn exe_link(&self, pid: i32) -> io::Result<PathBuf> {
        fs::read_link(self.path(pid, "exe"))
    }

    fn open_exe(&self, pid: i32) -> io::Result<File> {
        File::open(self.path(pid, "exe"))
    }

    fn exe_metadata(&self, pid: i32) -> io::Result<Metadata> {
        fs::metadata(self.path(pid, "exe"))
    }

    fn open_process(&self, pid: i32) -> io::Result<File> {
        File::open(self.root.join(pid.to_string()))
    }
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`.
///
/// Field 2 is the command name in parentheses, and the process chooses it
/// (`prctl(PR_SET_NAME)`): it may hold spaces, `)`, newlines and non-UTF-8
/// bytes. Nothing the kernel writes after it contains `)`, so the last `)`
/// ends it; splitting on spaces from the start would let a process forge
/// its start time.
fn parse_start_time(stat: &[u8], pid: i32) -> Result<u64, &'static str> {
    let rest = stat
        .strip_prefix(format!("{pid} (").as_bytes())
        .ok_or("does not start with the pid and '('")?;
    let close = rest
        .iter()
        .rposition(|&b| b == b')')
        .ok_or("no ')' after the command name")?;
    let after = &rest[close + 1..];
    let after = after.strip_suffix(b"\n").unwrap_or(after);
    let after = after
        .strip_prefix(b" ")
        .ok_or("no space after the command name")?;
    let after = std::str::from_utf8(after).map_err(|_| "not ASCII after the command name")?;
    let mut fields = after.split(' ');
    let state = fields.next().unwrap_or_default();
    if state.len() != 1 || !state.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err("field 3 is not a process state");
    }
    // Every later field is a decimal number, some of them signed.
    let numbers: Vec<&str> = fields.collect();
    if !numbers
        .iter()
        .all(|field| parse_decimal::<u64>(field.strip_prefix('-').unwrap_or(field)).is_ok())
    {
        return Err("a field after the state is not a number");
    }
    // `numbers` starts at field 4, so field 22 is at index 18.
    let start_time = numbers.get(18).ok_or("fewer than 22 fields")?;
    parse_decimal(start_time)
}

/// The value of the one `<key>:\t<value>` line of `/proc/<pid>/status`.
///
/// The process-chosen `Name:` line comes first and the kernel escapes
/// newlines in it, so it cannot forge another line; a key that appears twice
/// is refused all the same.
fn status_value<'a>(status: &'a [u8], key: &str) -> Result<&'a str, &'static str> {
    let prefix = format!("{key}:\t");
    let mut lines = status
        .split(|&b| b == b'\n')
        .filter_map(|line| line.strip_prefix(prefix.as_bytes()));
    let value = lines.next().ok_or("a field is missing")?;
    if lines.next().is_some() {
        return Err("a field appears twice");
    }
    std::str::from_utf8(value).map_err(|_| "a field is not ASCII")
}

/// `Uid:` and `Gid:` values: real, effective, saved and filesystem ids.
fn parse_id_quad(value: &str) -> Result<[u32; 4], &'static str> {
    let mut ids = [0u32; 4];
    let mut fields = value.split('\t');
    for id in &mut ids {
        *id = parse_decimal(fields.next().ok_or("fewer than four ids")?)?;
    }
    if fields.next().is_some() {
        return Err("more than four ids");
    }
    Ok(ids)
}

/// Digits only: no sign, no spaces, no `+`, which `str::parse` would allow.
fn parse_decimal<T: std::str::FromStr>(value: &str) -> Result<T, &'static str> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a decimal number");
    }
    value.parse().map_err(|_| "number out of range")
}

/// What identifies one version of one file without reading it. The change
/// time is in it because an unprivileged user can set the modification time
/// back after rewriting a file, but not the change time. Timestamps are only
/// as fine as the filesystem's clock tick, so a rewrite to the same size
/// within one tick would go unnoticed; a running executable cannot be opened
/// for writing (`ETXTBSY`), which leaves little room for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileKey {
    fn of(metadata: &Metadata) -> Self {
        FileKey {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// Digests by file version; when full, the oldest insertion goes first.
#[derive(Debug)]
struct DigestCache {
    digests: HashMap<FileKey, String>,
    order: VecDeque<FileKey>,
    capacity: usize,
}

impl DigestCache {
    fn new(capacity: usize) -> Self {
        DigestCache {
            digests: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn get(&self, key: &FileKey) -> Option<String> {
        self.digests.get(key).cloned()
    }

    fn insert(&mut self, key: FileKey, digest: String) {
        if self.digests.contains_key(&key) {
            return;
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => self.digests.remove(&oldest),
                None => break,
            };
        }
        self.order.push_back(key);
        self.digests.insert(key, digest);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AccountKind {
    /// `name:password:uid:gid:gecos:home:shell`
    Passwd,
    /// `name:password:gid:members`
    Group,
}

impl AccountKind {
    fn field_count(self) -> usize {
        match self {
            AccountKind::Passwd => 7,
            AccountKind::Group => 4,
        }
    }
}

type Names = Arc<HashMap<u32, String>>;

/// `/etc/passwd` or `/etc/group`, parsed again only when the file changed.
#[derive(Debug)]
struct AccountDatabase {
    path: PathBuf,
    kind: AccountKind,
    cached: Mutex<Option<(FileKey, Names)>>,
}

impl AccountDatabase {
    fn new(path: PathBuf, kind: AccountKind) -> Self {
        AccountDatabase {
            path,
            kind,
            cached: Mutex::new(None),
        }
    }

    fn name_of(&self, id: u32) -> Result<Option<String>, WorkloadAttestError> {
        Ok(self.names()?.get(&id).cloned())
    }

    fn names(&self) -> Result<Names, WorkloadAttestError> {
        let unreadable = |source: io::Error| WorkloadAttestError::AccountDatabaseUnreadable {
            path: self.path.clone(),
            source,
        };
        let file = match File::open(&self.path) {
            Ok(file) => file,
            // Minimal containers have no account files; then there are
            // simply no names.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Names::default()),
            Err(error) => return Err(unreadable(error)),
        };
        // The key comes from the opened file, so it describes the contents
        // read below even if the path is replaced meanwhile.
        let key = FileKey::of(&file.metadata().map_err(unreadable)?);
        if let Some((cached_key, names)) = lock(&self.cached).as_ref()
            && *cached_key == key
        {
            return Ok(Arc::clone(names));
        }
        let mut contents = Vec::new();
        file.take(MAX_ACCOUNT_FILE_SIZE + 1)
            .read_to_end(&mut contents)
            .map_err(unreadable)?;
        if contents.len() as u64 > MAX_ACCOUNT_FILE_SIZE {
            return Err(unreadable(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {MAX_ACCOUNT_FILE_SIZE} bytes"),
            )));
        }
        let names = Arc::new(parse_account_file(&contents, self.kind));
        *lock(&self.cached) = Some((key, Arc::clone(&names)));
        Ok(names)
    }
}

/// Id → name from a passwd or group file. Lines that are empty, comments,
/// NIS compat entries (`+`, `-`), not UTF-8, or malformed are skipped; the
/// first line for an id wins, as it does for `getpwuid`.
fn parse_account_file(contents: &[u8], kind: AccountKind) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in contents.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if let Some((id, name)) = parse_account_line(line, kind) {
            names.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    names
}

fn parse_account_line(line: &str, kind: AccountKind) -> Option<(u32, &str)> {
    if line.trim_start().starts_with('#') {
        return None;
    }
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() != kind.field_count() {
        return None;
    }
    let name = fields[0];
    let valid_name = !name.is_empty()
        && !name.starts_with(['+', '-'])
        && name.bytes().all(|b| b.is_ascii_graphic());
    if !valid_name {
        return None;
    }
    let id = parse_decimal(fields[2]).ok()?;
    Some((id, name))
}

#[cfg(test)]
mod tests;
