use super::*;

use std::process::Command;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

const PID: i32 = 4242;
const UID: u32 = 1000;
const GID: u32 = 1000;

fn selector_strings(selectors: &[Selector]) -> Vec<&str> {
    selectors.iter().map(Selector::as_str).collect()
}

fn stat_line(pid: i32, comm: &[u8], start_time: u64) -> Vec<u8> {
    let mut line = format!("{pid} (").into_bytes();
    line.extend_from_slice(comm);
    line.extend_from_slice(
        format!(
            ") S 1 {pid} {pid} 0 -1 4194560 150 0 0 0 1 2 0 0 20 0 1 0 {start_time} \
                 12345678 512 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        )
        .as_bytes(),
    );
    line
}

fn status_text(pid: i32, uid: u32) -> Vec<u8> {
    format!(
        "Name:\tfake\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nNgid:\t0\n\
             Pid:\t{pid}\nPPid:\t1\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n\
             Gid:\t{GID}\t{GID}\t{GID}\t{GID}\nGroups:\t{GID}\n"
    )
    .into_bytes()
}

/// A temp dir with `proc/<pid>/{stat,status,exe}` (exe a symlink to
/// `bin/<exe_name>`), and `etc/{passwd,group}`.
struct Fixture {
    dir: TempDir,
    exe: PathBuf,
}

impl Fixture {
    fn new(exe_name: &str, comm: &[u8], uid: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let process = dir.path().join("proc").join(PID.to_string());
        fs::create_dir_all(&process).unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        let exe = dir.path().join("bin").join(exe_name);
        fs::write(&exe, b"#!/bin/true\nfirst version\n").unwrap();
        std::os::unix::fs::symlink(&exe, process.join("exe")).unwrap();
        fs::write(process.join("stat"), stat_line(PID, comm, 777)).unwrap();
        fs::write(process.join("status"), status_text(PID, uid)).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:1000:alice\n",
        )
        .unwrap();
        Fixture { dir, exe }
    }

    fn plain() -> Self {
        Fixture::new("app", b"app", UID)
    }

    fn proc_root(&self) -> PathBuf {
        self.dir.path().join("proc")
    }

    fn etc_root(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    fn attestor(&self) -> WorkloadAttestor {
        WorkloadAttestor::with_roots(self.proc_root(), self.etc_root())
    }

    /// An attestor whose proc source answers `file` with `later` from
    /// its second read on, as if the process changed mid-attestation.
    fn changing_attestor(&self, file: &'static str, later: Vec<u8>) -> WorkloadAttestor {
        let proc = ChangesAfterFirstRead {
            inner: RootedProc {
                root: self.proc_root(),
            },
            file,
            later,
            reads: AtomicUsize::new(0),
        };
        WorkloadAttestor::with_proc_source(Box::new(proc), &self.etc_root())
    }

    fn expected_sha256(&self) -> String {
        mayfly_sdk::digest::sha256_hex_reader(File::open(&self.exe).unwrap(), 4096).unwrap()
    }
}

fn peer() -> PeerCredentials {
    PeerCredentials {
        uid: UID,
        gid: GID,
        pid: Some(PID),
    }
}

#[derive(Debug)]
struct ChangesAfterFirstRead {
    inner: RootedProc,
    /// `stat`, `status` or `exe` (the link target).
    file: &'static str,
    later: Vec<u8>,
    reads: AtomicUsize,
}

impl ChangesAfterFirstRead {
    fn changed(&self, file: &str) -> bool {
        file == self.file && self.reads.fetch_add(1, Ordering::SeqCst) > 0
    }
}

impl ProcSource for ChangesAfterFirstRead {
    fn read(&self, pid: i32, file: &'static str) -> io::Result<Vec<u8>> {
        if self.changed(file) {
            return Ok(self.later.clone());
        }
        self.inner.read(pid, file)
    }

    fn exe_link(&self, pid: i32) -> io::Result<PathBuf> {
        if self.changed("exe") {
            return Ok(PathBuf::from(
                String::from_utf8(self.later.clone()).unwrap(),
            ));
        }
        self.inner.exe_link(pid)
    }

    fn open_exe(&self, pid: i32) -> io::Result<File> {
        self.inner.open_exe(pid)
    }

    fn exe_metadata(&self, pid: i32) -> io::Result<Metadata> {
        self.inner.exe_metadata(pid)
    }

    fn open_process(&self, pid: i32) -> io::Result<File> {
        self.inner.open_process(pid)
    }
}

/// The test process, attested through the real `/proc`, with the digest
/// computed independently by `sha256sum`.
#[test]
fn attests_the_test_process_itself() {
    let status = fs::read("/proc/self/status").unwrap();
    let uid = parse_id_quad(status_value(&status, "Uid").unwrap()).unwrap()[1];
    let gid = parse_id_quad(status_value(&status, "Gid").unwrap()).unwrap()[1];
    let me = PeerCredentials {
        uid,
        gid,
        pid: Some(i32::try_from(std::process::id()).unwrap()),
    };
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("sha256sum").arg(&exe).output().unwrap();
    assert!(output.status.success());
    let output = String::from_utf8(output.stdout).unwrap();
    let expected_digest = output.split(' ').next().unwrap();
    assert_eq!(expected_digest.len(), 64);

    let selectors = WorkloadAttestor::new().attest(&me).unwrap();
    let selectors = selector_strings(&selectors);
    assert!(selectors.contains(&format!("unix:uid:{uid}").as_str()));
    assert!(selectors.contains(&format!("unix:gid:{gid}").as_str()));
    assert!(selectors.contains(&format!("unix:path:{}", exe.display()).as_str()));
    assert!(selectors.contains(&format!("unix:sha256:{expected_digest}").as_str()));
    assert!(selectors.is_sorted());
}

#[test]
fn fake_process_gets_every_selector() {
    let fixture = Fixture::plain();
    let selectors = fixture.attestor().attest(&peer()).unwrap();
    let mut expected = vec![
        "unix:gid:1000".to_owned(),
        "unix:group:staff".to_owned(),
        format!("unix:path:{}", fixture.exe.display()),
        format!("unix:sha256:{}", fixture.expected_sha256()),
        "unix:uid:1000".to_owned(),
        "unix:user:alice".to_owned(),
    ];
    expected.sort();
    assert_eq!(selector_strings(&selectors), expected);
}

#[test]
fn start_time_changing_during_attestation_is_refused() {
    let fixture = Fixture::plain();
    let same = fixture.changing_attestor("stat", stat_line(PID, b"app", 777));
    assert!(same.attest(&peer()).is_ok());
    let reused = fixture.changing_attestor("stat", stat_line(PID, b"app", 778));
    assert!(matches!(
        reused.attest(&peer()),
        Err(WorkloadAttestError::ProcessChanged {
            pid: PID,
            what: "start time"
        })
    ));
}

#[test]
fn uid_mismatch_is_refused() {
    let fixture = Fixture::plain();
    assert!(fixture.attestor().attest(&peer()).is_ok());
    let other_user = PeerCredentials {
        uid: 1001,
        ..peer()
    };
    assert!(matches!(
        fixture.attestor().attest(&other_user),
        Err(WorkloadAttestError::UidMismatch {
            pid: PID,
            socket_uid: 1001,
            proc_uid: UID
        })
    ));
}

#[test]
fn uid_changing_during_attestation_is_refused() {
    let fixture = Fixture::plain();
    let same = fixture.changing_attestor("status", status_text(PID, UID));
    assert!(same.attest(&peer()).is_ok());
    let setuid = fixture.changing_attestor("status", status_text(PID, 0));
    assert!(matches!(
        setuid.attest(&peer()),
        Err(WorkloadAttestError::UidMismatch { proc_uid: 0, .. })
    ));
}

#[test]
fn pid_naming_a_thread_is_refused() {
    let fixture = Fixture::plain();
    assert!(fixture.attestor().attest(&peer()).is_ok());
    let thread_status = String::from_utf8(status_text(PID, UID))
        .unwrap()
        .replace(&format!("Tgid:\t{PID}"), "Tgid:\t17");
    let thread = fixture.changing_attestor("status", thread_status.into_bytes());
    assert!(matches!(
        thread.attest(&peer()),
        Err(WorkloadAttestError::ProcessChanged {
            what: "thread group",
            ..
        })
    ));
}

#[test]
fn exec_during_attestation_is_refused() {
    let fixture = Fixture::plain();
    let same_link = fixture.exe.to_str().unwrap().as_bytes().to_vec();
    assert!(
        fixture
            .changing_attestor("exe", same_link)
            .attest(&peer())
            .is_ok()
    );
    let other = fixture.changing_attestor("exe", b"/usr/bin/other".to_vec());
    assert!(matches!(
        other.attest(&peer()),
        Err(WorkloadAttestError::ProcessChanged {
            what: "executable",
            ..
        })
    ));
}

#[test]
fn vanished_process_is_gone() {
    let fixture = Fixture::plain();
    assert!(fixture.attestor().attest(&peer()).is_ok());
    fs::remove_dir_all(fixture.proc_root().join(PID.to_string())).unwrap();
    assert!(matches!(
        fixture.attestor().attest(&peer()),
        Err(WorkloadAttestError::ProcessGone { pid: PID })
    ));
}

#[test]
fn peer_without_pid_gets_only_account_selectors() {
    let fixture = Fixture::plain();
    assert_eq!(fixture.attestor().attest(&peer()).unwrap().len(), 6);
    for pid in [None, Some(0), Some(-1)] {
        let selectors = fixture
            .attestor()
            .attest(&PeerCredentials { pid, ..peer() });
        assert_eq!(
            selector_strings(&selectors.unwrap()),
            [
                "unix:gid:1000",
                "unix:group:staff",
                "unix:uid:1000",
                "unix:user:alice"
            ]
        );
    }
}

#[test]
fn command_name_with_spaces_and_parentheses_parses() {
    assert_eq!(parse_start_time(&stat_line(PID, b"app", 5), PID), Ok(5));
    let tricky: &[u8] = b"a) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 (\n\xff";
    assert_eq!(parse_start_time(&stat_line(PID, tricky, 99), PID), Ok(99));
    let fixture = Fixture::new("app", b"evil ) 1 2 (", UID);
    assert!(fixture.attestor().attest(&peer()).is_ok());
    // The kernel's own format, as a positive control on real input.
    let own = fs::read("/proc/self/stat").unwrap();
    let own_pid = i32::try_from(std::process::id()).unwrap();
    assert!(parse_start_time(&own, own_pid).is_ok());
}

#[test]
fn malformed_stat_is_refused() {
    let good = stat_line(PID, b"app", 5);
    assert!(parse_start_time(&good, PID).is_ok());
    assert!(parse_start_time(&good, PID + 1).is_err());
    assert!(parse_start_time(b"4242 (app) S 1 2 3\n", PID).is_err());
    assert!(parse_start_time(b"4242 (app S 1 2 3\n", PID).is_err());
    let text = String::from_utf8(good).unwrap();
    assert!(parse_start_time(text.replace(" 5 ", " +5 ").as_bytes(), PID).is_err());
    assert!(parse_start_time(text.replace(") S", ")  S").as_bytes(), PID).is_err());
    assert!(parse_start_time(text.replace(") S", ") 7").as_bytes(), PID).is_err());
}

#[test]
fn status_parses_strictly() {
    let good = status_text(PID, UID);
    assert_eq!(
        parse_id_quad(status_value(&good, "Uid").unwrap()),
        Ok([UID; 4])
    );
    assert_eq!(status_value(&good, "Tgid"), Ok("4242"));
    let twice = [good.as_slice(), b"Uid:\t0\t0\t0\t0\n"].concat();
    assert!(status_value(&twice, "Uid").is_err());
    assert!(status_value(b"Name:\tx\n", "Uid").is_err());
    assert!(parse_id_quad("1\t2\t3").is_err());
    assert!(parse_id_quad("1\t2\t3\t4\t5").is_err());
    assert!(parse_id_quad("1\t-2\t3\t4").is_err());
    assert!(parse_id_quad("1 2 3 4").is_err());
}

#[test]
fn unchanged_executable_is_hashed_once() {
    let fixture = Fixture::plain();
    let attestor = fixture.attestor();
    let first = attestor.attest(&peer()).unwrap();
    assert_eq!(attestor.files_hashed.load(Ordering::SeqCst), 1);
    assert_eq!(attestor.attest(&peer()).unwrap(), first);
    assert_eq!(attestor.files_hashed.load(Ordering::SeqCst), 1);
}

#[test]
fn changed_executable_is_hashed_again() {
    let fixture = Fixture::plain();
    let attestor = fixture.attestor();
    attestor.attest(&peer()).unwrap();
    assert_eq!(attestor.files_hashed.load(Ordering::SeqCst), 1);

    // Same size, new contents, and a modification time set explicitly so
    // the test does not depend on the filesystem's clock tick.
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&fixture.exe)
        .unwrap();
    io::Write::write_all(&mut &file, b"#!/bin/true\nother version\n").unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    drop(file);
    let selectors = attestor.attest(&peer()).unwrap();
    assert_eq!(attestor.files_hashed.load(Ordering::SeqCst), 2);
    let expected = format!("unix:sha256:{}", fixture.expected_sha256());
    assert!(selector_strings(&selectors).contains(&expected.as_str()));

    fs::OpenOptions::new()
        .append(true)
        .open(&fixture.exe)
        .and_then(|mut file| io::Write::write_all(&mut file, b"more\n"))
        .unwrap();
    let selectors = attestor.attest(&peer()).unwrap();
    assert_eq!(attestor.files_hashed.load(Ordering::SeqCst), 3);
    let expected = format!("unix:sha256:{}", fixture.expected_sha256());
    assert!(selector_strings(&selectors).contains(&expected.as_str()));
}

#[test]
fn digest_cache_evicts_oldest() {
    let key = |inode| FileKey {
        device: 1,
        inode,
        size: 10,
        modified: (0, 0),
        changed: (0, 0),
    };
    let mut cache = DigestCache::new(2);
    cache.insert(key(1), "one".into());
    cache.insert(key(2), "two".into());
    assert_eq!(cache.get(&key(1)).as_deref(), Some("one"));
    cache.insert(key(3), "three".into());
    assert_eq!(cache.get(&key(1)), None);
    assert_eq!(cache.get(&key(2)).as_deref(), Some("two"));
    assert_eq!(cache.get(&key(3)).as_deref(), Some("three"));
    assert_eq!(cache.digests.len(), 2);
}

#[test]
fn oversized_executable_is_refused() {
    let fixture = Fixture::plain();
    let size = fs::metadata(&fixture.exe).unwrap().len();
    let mut attestor = fixture.attestor();
    attestor.max_executable_size = size;
    assert!(attestor.attest(&peer()).is_ok());
    attestor.max_executable_size = size - 1;
    assert!(matches!(
        attestor.attest(&peer()),
        Err(WorkloadAttestError::ExecutableTooLarge { .. })
    ));
}

#[test]
fn path_that_cannot_be_a_selector_is_left_out() {
    let plain = Fixture::plain();
    let selectors = plain.attestor().attest(&peer()).unwrap();
    assert!(
        selectors
            .iter()
            .any(|s| s.as_str().starts_with("unix:path:"))
    );

    let spaced = Fixture::new("my app", b"app", UID);
    let selectors = spaced.attestor().attest(&peer()).unwrap();
    assert!(
        !selectors
            .iter()
            .any(|s| s.as_str().starts_with("unix:path:"))
    );
    let digest = format!("unix:sha256:{}", spaced.expected_sha256());
    assert!(selector_strings(&selectors).contains(&digest.as_str()));
}

#[test]
fn passwd_and_group_skip_comments_and_malformed_lines() {
    let passwd = b"# comment: with:colons:0:0:x:y\n\
            \n\
            root:x:0:0:root:/root:/bin/sh\n\
            +nis:x:5:5:::\n\
            short:x:6:6\n\
            bad uid:x:7:7:::/bin/sh\n\
            signed:x:+8:8:::/bin/sh\n\
            spaced name:x:9:9:::/bin/sh\n\
            first:x:10:10:::/bin/sh\n\
            second:x:10:10:::/bin/sh\n\
            \xffbin:x:11:11:::/bin/sh\n\
            huge:x:4294967296:1:::/bin/sh\n";
    let names = parse_account_file(passwd, AccountKind::Passwd);
    assert_eq!(names.get(&0).map(String::as_str), Some("root"));
    assert_eq!(names.get(&10).map(String::as_str), Some("first"));
    assert_eq!(names.len(), 2, "{names:?}");

    let group = b"  # indented comment\nwheel:x:10:alice,bob\nnomembers:x:20:\n\
            toomany:x:30:a:b\nfew:x:40\n-nis:x:50:\n";
    let names = parse_account_file(group, AccountKind::Group);
    assert_eq!(names.get(&10).map(String::as_str), Some("wheel"));
    assert_eq!(names.get(&20).map(String::as_str), Some("nomembers"));
    assert_eq!(names.len(), 2, "{names:?}");
    // A group line is not a passwd line, and the other way round.
    assert!(parse_account_file(group, AccountKind::Passwd).is_empty());
}

#[test]
fn account_names_follow_file_changes() {
    let fixture = Fixture::plain();
    let attestor = fixture.attestor();
    let no_pid = PeerCredentials {
        pid: None,
        ..peer()
    };
    let names = |attestor: &WorkloadAttestor| {
        let selectors = attestor.attest(&no_pid).unwrap();
        selector_strings(&selectors)
            .into_iter()
            .filter(|s| s.starts_with("unix:user:") || s.starts_with("unix:group:"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&attestor), ["unix:group:staff", "unix:user:alice"]);
    // Replaced the way `vipw` and `useradd` do: a new file renamed over.
    let replacement = fixture.dir.path().join("passwd.new");
    fs::write(&replacement, "bob:x:1000:1000::/home/bob:/bin/sh\n").unwrap();
    fs::rename(&replacement, fixture.etc_root().join("passwd")).unwrap();
    assert_eq!(names(&attestor), ["unix:group:staff", "unix:user:bob"]);
    fs::remove_file(fixture.etc_root().join("group")).unwrap();
    assert_eq!(names(&attestor), ["unix:user:bob"]);
}

#[test]
fn attestor_is_shareable() {
    fn assert_send_sync<T: Send + Sync + std::fmt::Debug>() {}
    assert_send_sync::<WorkloadAttestor>();
}

/// Counts what the attestor asks of `/proc`, per kind of question; with `held_stat`,
/// the held handle's `stat` is that instead (a pid reused before the handle opened).
#[derive(Debug)]
struct Counting {
    inner: RootedProc,
    asked: Arc<Mutex<HashMap<&'static str, usize>>>,
    held_stat: Option<Vec<u8>>,
}

impl Counting {
    fn count(&self, what: &'static str) {
        *lock(&self.asked).entry(what).or_default() += 1;
    }
}

impl ProcSource for Counting {
    fn read(&self, pid: i32, file: &'static str) -> io::Result<Vec<u8>> {
        self.count(file);
        self.inner.read(pid, file)
    }

    fn exe_link(&self, pid: i32) -> io::Result<PathBuf> {
        self.count("readlink exe");
        self.inner.exe_link(pid)
    }

    fn open_exe(&self, pid: i32) -> io::Result<File> {
        self.count("open exe");
        self.inner.open_exe(pid)
    }

    fn exe_metadata(&self, pid: i32) -> io::Result<Metadata> {
        self.count("stat exe");
        self.inner.exe_metadata(pid)
    }

    fn open_process(&self, pid: i32) -> io::Result<File> {
        self.count("open process");
        self.inner.open_process(pid)
    }

    fn held_read(&self, process: &File, file: &'static str) -> io::Result<Vec<u8>> {
        self.count("held stat");
        match &self.held_stat {
            Some(stat) => Ok(stat.clone()),
            None => self.inner.held_read(process, file),
        }
    }

    fn held_exe_metadata(&self, process: &File) -> io::Result<Metadata> {
        self.count("held stat exe");
        self.inner.held_exe_metadata(process)
    }
}

impl Fixture {
    /// An attestor over this fixture that counts its `/proc` questions.
    fn counting_attestor(&self) -> (WorkloadAttestor, Arc<Mutex<HashMap<&'static str, usize>>>) {
        self.counting_attestor_with(None)
    }

    /// [`counting_attestor`](Self::counting_attestor), its held `stat` replaced.
    fn counting_attestor_with(
        &self,
        held_stat: Option<Vec<u8>>,
    ) -> (WorkloadAttestor, Arc<Mutex<HashMap<&'static str, usize>>>) {
        let asked = Arc::new(Mutex::new(HashMap::new()));
        let proc = Counting {
            inner: RootedProc {
                root: self.proc_root(),
            },
            asked: asked.clone(),
            held_stat,
        };
        let attestor = WorkloadAttestor::with_proc_source(Box::new(proc), &self.etc_root());
        (attestor, asked)
    }
}

#[test]
fn a_second_call_is_answered_from_memory_with_one_stat_under_the_held_process() {
    let fixture = Fixture::plain();
    let (attestor, asked) = fixture.counting_attestor();
    // Nothing attested yet: nothing to remember.
    assert!(attestor.attest_remembered(&peer()).is_none());

    let full = attestor.attest(&peer()).unwrap();
    let before = lock(&asked).clone();
    assert_eq!(before.get("status"), Some(&2), "{before:?}");
    // The handle was opened once and its start time checked through it.
    assert_eq!(before.get("open process"), Some(&1), "{before:?}");
    assert_eq!(before.get("held stat"), Some(&1), "{before:?}");
    for _ in 0..3 {
        let remembered = attestor.attest_remembered(&peer()).expect("remembered");
        assert_eq!(&*remembered, full.as_slice());
    }
    let after = lock(&asked).clone();
    let added = |what| after.get(what).unwrap_or(&0) - before.get(what).unwrap_or(&0);
    assert_eq!(added("held stat exe"), 3);
    for what in [
        "stat",
        "status",
        "readlink exe",
        "open exe",
        "stat exe",
        "open process",
        "held stat",
    ] {
        assert_eq!(added(what), 0, "{what}: {after:?}");
    }
    assert_eq!(attestor.files_hashed.load(Ordering::SeqCst), 1);
}

#[test]
fn another_process_an_exec_a_rewritten_executable_or_other_credentials_are_attested_again() {
    let fixture = Fixture::plain();
    let attestor = fixture.attestor();
    attestor.attest(&peer()).unwrap();
    assert!(attestor.attest_remembered(&peer()).is_some(), "control");

    // Other socket credentials, or none with a pid.
    for other in [
        PeerCredentials { uid: 0, ..peer() },
        PeerCredentials { gid: 0, ..peer() },
        PeerCredentials {
            pid: None,
            ..peer()
        },
        PeerCredentials {
            pid: Some(PID + 1),
            ..peer()
        },
    ] {
        assert!(attestor.attest_remembered(&other).is_none(), "{other:?}");
    }

    // The process executed another program.
    let other_exe = fixture.dir.path().join("bin/other");
    fs::write(&other_exe, b"#!/bin/true\nanother program\n").unwrap();
    let link = fixture.proc_root().join(PID.to_string()).join("exe");
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&other_exe, &link).unwrap();
    assert!(attestor.attest_remembered(&peer()).is_none());
    let again = attestor.attest(&peer()).unwrap();
    let path = format!("unix:path:{}", other_exe.display());
    assert!(selector_strings(&again).contains(&path.as_str()));
    assert_eq!(
        attestor.attest_remembered(&peer()).as_deref(),
        Some(again.as_slice()),
        "the new attestation is remembered"
    );

    // The executable's file was rewritten in place.
    fs::OpenOptions::new()
        .append(true)
        .open(&other_exe)
        .and_then(|mut file| io::Write::write_all(&mut file, b"patched\n"))
        .unwrap();
    assert!(attestor.attest_remembered(&peer()).is_none());

    // The process is gone: nothing under its directory is found any more.
    attestor.attest(&peer()).unwrap();
    assert!(attestor.attest_remembered(&peer()).is_some(), "control");
    fs::remove_dir_all(fixture.proc_root().join(PID.to_string())).unwrap();
    assert!(attestor.attest_remembered(&peer()).is_none());
}

#[test]
fn a_pid_reused_before_the_handle_is_opened_is_not_remembered() {
    let fixture = Fixture::plain();
    let (attestor, _) = fixture.counting_attestor_with(Some(stat_line(PID, b"newcomer", 999)));
    // The attestation itself stands (it saw one process throughout) ...
    attestor.attest(&peer()).unwrap();
    // ... but the handle opened afterwards is another process's: not kept.
    assert!(attestor.attest_remembered(&peer()).is_none());
    // Control: the same fixture through a plain source is remembered.
    let plain = fixture.attestor();
    plain.attest(&peer()).unwrap();
    assert!(plain.attest_remembered(&peer()).is_some());
}

/// The held handle on the real /proc: a child process is remembered while it runs,
/// and not once it has exited, whatever its pid names next.
#[test]
fn a_real_process_that_exits_is_no_longer_remembered() {
    let status = fs::read("/proc/self/status").unwrap();
    let uid = parse_id_quad(status_value(&status, "Uid").unwrap()).unwrap()[1];
    let gid = parse_id_quad(status_value(&status, "Gid").unwrap()).unwrap()[1];
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let peer = PeerCredentials {
        uid,
        gid,
        pid: Some(i32::try_from(child.id()).unwrap()),
    };
    let attestor = WorkloadAttestor::new();
    let full = attestor.attest(&peer).unwrap();
    assert_eq!(
        attestor.attest_remembered(&peer).as_deref(),
        Some(full.as_slice()),
        "control: remembered while it runs"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(attestor.attest_remembered(&peer).is_none());
}

#[test]
fn a_memory_lasts_remember_for_and_no_longer() {
    let fixture = Fixture::plain();
    let mut attestor = fixture.attestor();
    attestor.attest(&peer()).unwrap();
    assert!(attestor.attest_remembered(&peer()).is_some(), "control");
    attestor.remember_for = Duration::ZERO;
    assert!(attestor.attest_remembered(&peer()).is_none());
}

#[test]
fn the_memory_is_capped() {
    let fixture = Fixture::plain();
    let attestor = fixture.attestor();
    let full = attestor.attest(&peer()).unwrap();
    let known = lock(&attestor.remembered).get(&PID).cloned().unwrap();
    for pid in 1..=i32::try_from(REMEMBERED_CAPACITY).unwrap() * 2 {
        attestor.remember(pid + PID, known.clone());
        assert!(lock(&attestor.remembered).len() <= REMEMBERED_CAPACITY);
    }
    // Full of live memories: they were dropped, and the newest kept.
    assert!(lock(&attestor.remembered).len() < REMEMBERED_CAPACITY);
    attestor.attest(&peer()).unwrap();
    assert_eq!(
        attestor.attest_remembered(&peer()).as_deref(),
        Some(full.as_slice())
    );
}
