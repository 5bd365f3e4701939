//! Real crashes at every rotation failpoint: this test binary starts itself again as a child
//! with `MAYFLY_FAILPOINT` set, the child aborts at that step (as if killed), and the parent
//! loads the directory and checks that it is consistent: the state before the step when the
//! crash came before the journal was committed, the state after it otherwise, and that
//! rotation carries on from there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::rotation::*;
use common::*;
use mayfly_ca::{
    AuthorityKind, AuthorityState, CaConfig, CertificateAuthority, create_root,
    sign_intermediate_csr,
};

/// `<dir>|<operation>|<unix seconds>|<argument file or empty>` for the child.
const CHILD_ENV: &str = "MAYFLY_CRASH_TEST_CHILD";
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(60 * 60);
const SIGABRT: i32 = 6;

fn crash_config() -> CaConfig {
    let mut config = config("example.org");
    config.intermediate_ttl = days(10);
    config.jwt_key_ttl = days(4);
    config.publish_ahead = 15 * MINUTE;
    config
}

fn load(dir: &Path, now: SystemTime) -> CertificateAuthority {
    CertificateAuthority::load_or_create(dir, &crash_config(), now)
        .unwrap()
        .0
}

/// A rotation step, as the child runs it.
#[derive(Clone, Debug)]
struct Step {
    operation: String,
    now: SystemTime,
    argument: Option<PathBuf>,
}

impl Step {
    fn new(operation: &str, now: SystemTime) -> Self {
        Self {
            operation: operation.to_string(),
            now,
            argument: None,
        }
    }

    fn run(&self, ca: &CertificateAuthority) {
        let argument = || std::fs::read(self.argument.as_ref().unwrap()).unwrap();
        let now = self.now;
        match self.operation.as_str() {
            "rotate_due" => drop(ca.rotate_due(now).unwrap()),
            "prepare_root" => drop(ca.prepare_root(now).unwrap()),
            "prepare_root_from_certificate" => {
                drop(ca.prepare_root_from_certificate(&argument(), now).unwrap())
            }
            "activate_root" => drop(ca.activate_root(now, false).unwrap()),
            "retire_root" => drop(ca.retire_root(now, false).unwrap()),
            "intermediate_csr" => drop(ca.intermediate_csr(now).unwrap()),
            "import_intermediate" => drop(ca.import_intermediate(&argument(), now).unwrap()),
            other => panic!("unknown operation {other}"),
        }
    }
}

#[test]
#[ignore = "started as a child process by the crash tests"]
fn crash_child() {
    let spec = std::env::var(CHILD_ENV).expect("run by the crash tests only");
    let parts: Vec<&str> = spec.split('|').collect();
    let [dir, operation, now, argument] = parts[..] else {
        panic!("bad spec {spec}")
    };
    let now = UNIX_EPOCH + Duration::from_secs(now.parse().unwrap());
    let step = Step {
        operation: operation.to_string(),
        now,
        argument: (!argument.is_empty()).then(|| PathBuf::from(argument)),
    };
    step.run(&load(Path::new(dir), now));
    // Reaching this line means the failpoint was never hit; the parent sees exit code 0.
}

/// This test binary, running only `crash_child`, without core dumps (the abort is the point,
/// not something to debug).
fn child() -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", r#"ulimit -c 0; exec "$0" "$@""#])
        .arg(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"]);
    command
}

/// Runs `step` in a child that aborts at `failpoint`.
fn crash_at(failpoint: &str, dir: &Path, step: &Step) {
    let spec = format!(
        "{}|{}|{}|{}",
        dir.display(),
        step.operation,
        unix(step.now),
        step.argument
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default()
    );
    let output = child()
        .env(CHILD_ENV, spec)
        .env("MAYFLY_FAILPOINT", failpoint)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(SIGABRT),
        "{failpoint}: the child did not abort: {:?}\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains(&format!("failpoint {failpoint}: aborting")),
        "{stderr}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Kinds and states of every authority, sorted: the shape of a state, whatever the IDs.
fn shape(ca: &CertificateAuthority, now: SystemTime) -> Vec<(AuthorityKind, AuthorityState)> {
    let mut shape: Vec<_> = ca
        .status(now)
        .authorities
        .iter()
        .map(|authority| (authority.kind, authority.state))
        .collect();
    shape.sort();
    shape
}

/// Crashes `step` at `failpoint` in a copy of `prepared`, and checks the result.
fn check_crash(prepared: &Path, scratch: &Path, failpoint: &str, step: &Step, committed: bool) {
    let now = step.now;
    let dir = scratch.join(failpoint);
    let reference_dir = scratch.join(format!("{failpoint}.reference"));
    copy_dir(prepared, &dir);
    copy_dir(prepared, &reference_dir);
    let before_ca = load(&dir, now);
    let before = before_ca.status(now);
    let before_shape = shape(&before_ca, now);
    drop(before_ca);
    let reference = load(&reference_dir, now);
    step.run(&reference);
    let after = shape(&reference, now);
    assert_ne!(
        before_shape, after,
        "{failpoint}: the step must change the state"
    );

    crash_at(failpoint, &dir, step);

    let (ca, report) = CertificateAuthority::load_or_create(&dir, &crash_config(), now)
        .unwrap_or_else(|e| panic!("{failpoint}: reload failed: {e}"));
    assert!(report.files.is_empty(), "{failpoint}: {report:?}");
    if committed {
        assert_ne!(
            shape(&ca, now),
            before_shape,
            "{failpoint}: the commit is kept"
        );
        if step.operation == "rotate_due" {
            // rotate_due commits several steps; what the crash cut off runs on the next call.
            step.run(&ca);
        }
    } else {
        assert_eq!(ca.status(now), before, "{failpoint}: state before the step");
        // And the step can simply be run again.
        step.run(&ca);
    }
    assert_eq!(shape(&ca, now), after, "{failpoint}");
    // Retired authorities' files are gone once loaded; everything named is present (else
    // the load would have failed).
    for retired in records(&dir, "root", "retired")
        .iter()
        .chain(&records(&dir, "intermediate", "retired"))
        .chain(&records(&dir, "jwt-key", "retired"))
    {
        for which in ["key", "certificate"] {
            if retired[which].is_string() {
                assert!(
                    !file_of(&dir, retired, which).exists(),
                    "{failpoint}: {retired}"
                );
            }
        }
    }
    // The CA still issues leaves that chain to a published root.
    let leaf = issue_at(&ca, now, HOUR);
    let (ok, output) = openssl_verify_chain(
        &bundle_roots_pem(&ca.bundle(1, MINUTE)),
        &leaf.cert_chain_der,
        now,
    );
    assert!(ok, "{failpoint}: {output}");
    assert_restart_keeps_state(&dir, &crash_config(), &ca, now);
}

/// A new CA in `scratch/<name>`.
fn fresh(scratch: &Path, name: &str) -> PathBuf {
    let dir = scratch.join(name);
    load(&dir, t0());
    dir
}

fn half_life_of_active_intermediate(dir: &Path) -> SystemTime {
    common::planned_half_life(&record(dir, "intermediate", "active"))
}

#[test]
fn intermediate_and_jwt_rotation_survive_a_crash_at_every_step() {
    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path();

    let start = fresh(scratch, "start");
    let half = half_life_of_active_intermediate(&start);
    let prepare = Step::new("rotate_due", half);
    check_crash(
        &start,
        scratch,
        "intermediate.prepare.key-written",
        &prepare,
        false,
    );
    check_crash(
        &start,
        scratch,
        "intermediate.prepare.committed",
        &prepare,
        true,
    );

    let prepared = fresh(scratch, "prepared");
    load(&prepared, half).rotate_due(half).unwrap();
    let activate = Step::new("rotate_due", half + 15 * MINUTE);
    check_crash(
        &prepared,
        scratch,
        "intermediate.activate.committed",
        &activate,
        true,
    );

    let switched = fresh(scratch, "switched");
    load(&switched, half).rotate_due(half).unwrap();
    load(&switched, half)
        .rotate_due(half + 15 * MINUTE)
        .unwrap();
    let retire = Step::new("rotate_due", half + 15 * MINUTE + HOUR);
    check_crash(&switched, scratch, "retire.committed", &retire, true);
    check_crash(&switched, scratch, "retire.files-deleted", &retire, true);

    let jwt_half = t0() + days(2);
    let jwt_prepare = Step::new("rotate_due", jwt_half);
    check_crash(
        &start,
        scratch,
        "jwt.prepare.key-written",
        &jwt_prepare,
        false,
    );
    check_crash(&start, scratch, "jwt.prepare.committed", &jwt_prepare, true);
    let jwt_prepared = fresh(scratch, "jwt-prepared");
    load(&jwt_prepared, jwt_half).rotate_due(jwt_half).unwrap();
    let jwt_activate = Step::new("rotate_due", jwt_half + 15 * MINUTE);
    check_crash(
        &jwt_prepared,
        scratch,
        "jwt.activate.committed",
        &jwt_activate,
        true,
    );
}

#[test]
fn root_rotation_survives_a_crash_at_every_step() {
    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path();
    let t1 = t0() + days(1);
    let t2 = t1 + 15 * MINUTE;

    let start = fresh(scratch, "start");
    let prepare = Step::new("prepare_root", t1);
    check_crash(&start, scratch, "root.prepare.key-written", &prepare, false);
    check_crash(&start, scratch, "root.prepare.committed", &prepare, true);

    let prepared = fresh(scratch, "prepared");
    load(&prepared, t1).prepare_root(t1).unwrap();
    let activate = Step::new("activate_root", t2);
    check_crash(
        &prepared,
        scratch,
        "root.activate.intermediate-written",
        &activate,
        false,
    );
    check_crash(
        &prepared,
        scratch,
        "root.activate.committed",
        &activate,
        true,
    );

    let activated = fresh(scratch, "activated");
    load(&activated, t1).prepare_root(t1).unwrap();
    load(&activated, t2).activate_root(t2, false).unwrap();
    let retire = Step::new("retire_root", t2 + HOUR);
    check_crash(&activated, scratch, "root.retire.committed", &retire, true);
    check_crash(
        &activated,
        scratch,
        "root.retire.files-deleted",
        &retire,
        true,
    );
}

#[test]
fn the_offline_root_flow_survives_a_crash_at_every_step() {
    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path();
    let td = trust_domain("example.org");
    let t1 = t0() + days(1);
    let t2 = t1 + HOUR;

    let (root_pem, root_key) = create_root(&td, days(3650), t1).unwrap();
    let root_file = scratch.join("offline-root.pem");
    std::fs::write(&root_file, &root_pem).unwrap();

    let start = fresh(scratch, "start");
    let mut publish = Step::new("prepare_root_from_certificate", t1);
    publish.argument = Some(root_file);
    check_crash(
        &start,
        scratch,
        "root.prepare.certificate-written",
        &publish,
        false,
    );
    check_crash(&start, scratch, "root.prepare.committed", &publish, true);

    let published = fresh(scratch, "published");
    publish.run(&load(&published, t1));
    let csr = Step::new("intermediate_csr", t2);
    check_crash(
        &published,
        scratch,
        "intermediate.csr.key-written",
        &csr,
        false,
    );
    check_crash(
        &published,
        scratch,
        "intermediate.csr.committed",
        &csr,
        true,
    );

    let pending = fresh(scratch, "pending");
    publish.run(&load(&pending, t1));
    let request = load(&pending, t2).intermediate_csr(t2).unwrap();
    let signed = sign_intermediate_csr(
        root_pem.as_bytes(),
        root_key.as_bytes(),
        request.as_bytes(),
        &td,
        days(30),
        t2,
    )
    .unwrap();
    let signed_file = scratch.join("signed.pem");
    std::fs::write(&signed_file, signed).unwrap();
    let mut import = Step::new("import_intermediate", t2 + MINUTE);
    import.argument = Some(signed_file);
    check_crash(
        &pending,
        scratch,
        "import.certificate-written",
        &import,
        false,
    );
    check_crash(&pending, scratch, "import.committed", &import, true);
}

#[test]
fn an_unarmed_or_other_failpoint_lets_the_step_finish() {
    // Positive control for crash_at: with a failpoint the step never reaches, the child
    // finishes normally.
    let scratch = tempfile::tempdir().unwrap();
    let dir = fresh(scratch.path(), "ca");
    let output = child()
        .env(
            CHILD_ENV,
            format!("{}|prepare_root|{}|", dir.display(), unix(t0() + days(1))),
        )
        .env("MAYFLY_FAILPOINT", "no.such.step")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(records(&dir, "root", "prepared").len(), 1);
}
