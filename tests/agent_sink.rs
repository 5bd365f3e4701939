//! The agent's file sink end to end: a real broker in-process, the agent
//! in-process writing the SVID of the agent process (this test process) to
//! a directory, and independent checks of what it wrote (`openssl`,
//! jwt-simple, x509-parser). The last tests run the real `mayfly agent`.
//!
//! The broker and the agent share one manual clock, so renewals are forced
//! by moving the clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{TRUST_DOMAIN, TestBroker};
use mayfly::clock::Clock as _;
use mayfly_agent::sink::{
    FileSinkConfig, RenewCommand, RenewSignal, Signal, SignalTarget, SinkAudience,
};
use mayfly_agent::{AgentConfig, AgentError, RunningAgent};
use mayfly_sdk::proto::v1 as pb;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tempfile::TempDir;

const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");
const AGENT_PATH: &str = "/agent/node-1";
const WORKLOAD_PATH: &str = "/nginx";
const AUDIENCE: &str = "billing-db";
const AUDIENCE_FILE: &str = "jwt_billing-db.token";
/// An audience that is a URL, and the file name it becomes.
const URL_AUDIENCE: &str = "spiffe://example.org/db";
const URL_AUDIENCE_FILE: &str = "jwt_spiffe___example.org_db.token";
/// How long a test waits for something the agent does in the background.
const PATIENCE: Duration = Duration::from_secs(30);
/// Long enough for the agent (syncing every 200 ms) to act several times.
const SETTLE: Duration = Duration::from_millis(1500);

fn agent_id() -> String {
    format!("spiffe://{TRUST_DOMAIN}{AGENT_PATH}")
}

fn workload_id() -> String {
    format!("spiffe://{TRUST_DOMAIN}{WORKLOAD_PATH}")
}

/// A broker, the agent's entry and join token, and the entry the sink
/// writes, registered under the agent.
struct Setup {
    broker: TestBroker,
    dir: TempDir,
    token: String,
    uid: u32,
    workload: pb::Entry,
    agent: Option<RunningAgent>,
}

impl Setup {
    /// The workload entry names `selector` (`None`: this process's uid),
    /// allows both test audiences, and has the given TTLs.
    async fn new(selector: Option<&str>, x509_ttl: Option<u32>, jwt_ttl: Option<u32>) -> Setup {
        let broker = TestBroker::start().await;
        let dir = tempfile::tempdir().unwrap();
        let uid = common::my_uid(dir.path());
        let token = broker.agent_join_token(AGENT_PATH).await;
        let own_selector = format!("unix:uid:{uid}");
        let mut spec = TestBroker::entry_spec(
            WORKLOAD_PATH,
            &[AUDIENCE, URL_AUDIENCE],
            &[selector.unwrap_or(&own_selector)],
        );
        spec.parent_id = Some(agent_id());
        spec.x509_ttl_seconds = x509_ttl;
        spec.jwt_ttl_seconds = jwt_ttl;
        let workload = broker.create_entry_from(spec).await.unwrap();
        Setup {
            broker,
            dir,
            token,
            uid,
            workload,
            agent: None,
        }
    }

    fn config(&self, sink: Option<FileSinkConfig>) -> AgentConfig {
        let socket = self.dir.path().join("run").join("agent.sock");
        let mut config = self
            .broker
            .agent_config(socket, self.data_dir(), Some(&self.token));
        config.file_sink = sink;
        config
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    /// Not there yet: the sink creates it (and its parent).
    fn sink_dir(&self) -> PathBuf {
        self.dir.path().join("out").join("svid")
    }

    /// The sink for the workload entry, with no audience or notification.
    fn sink(&self) -> FileSinkConfig {
        FileSinkConfig::new(self.sink_dir(), workload_id().parse().unwrap())
    }

    async fn start(&mut self, sink: FileSinkConfig) {
        let agent = mayfly_agent::start(self.config(Some(sink))).await.unwrap();
        self.agent = Some(agent);
    }

    fn agent(&self) -> &RunningAgent {
        self.agent.as_ref().unwrap()
    }

    /// The broker's root CA, DER.
    fn root_der(&self) -> Vec<u8> {
        certificates(&self.broker.bundle_pem()).remove(0)
    }

    /// Waits for a sync that finished at or after the clock's current time,
    /// then lets the sink act on it.
    async fn let_the_agent_catch_up(&self) {
        let now = self.broker.clock.now();
        eventually("a sync at the current time", || async {
            self.agent()
                .health()
                .last_sync
                .filter(|at| *at >= now)
                .map(|_| ())
        })
        .await;
        tokio::time::sleep(SETTLE).await;
    }

    async fn shutdown(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
        }
        self.broker.stop().await;
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap().to_vec())
        .collect()
}

fn chain_in(dir: &Path) -> Vec<Vec<u8>> {
    certificates(&std::fs::read(dir.join("svid.pem")).unwrap())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// The leaf's serial number, hex.
fn serial(leaf_der: &[u8]) -> String {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(leaf_der).unwrap();
    cert.raw_serial_as_string()
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn count_in(dir: &Path) -> usize {
    names_in(dir).len()
}

/// `openssl` with `args`, its standard output; the command must succeed.
fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is needed for these tests");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Checks the X.509 files in `dir` with independent tools: the chain
/// verifies to the broker's root with `openssl verify`, the leaf is an
/// X509-SVID for the workload, the key file is a PKCS#8 key `openssl`
/// reads and finds to be the certificate's, and the bundle is the root.
fn assert_x509_files_are_right(dir: &Path, root_der: &[u8]) {
    let chain = chain_in(dir);
    common::assert_x509_svid_profile(&chain[0], &workload_id());
    let (verified, output) = common::openssl_verify(root_der, &chain, "sslclient");
    assert!(verified, "openssl verify: {output}");

    let key_path = dir.join("svid_key.pem");
    let key_pem = std::fs::read_to_string(&key_path).unwrap();
    assert!(
        key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "PKCS#8"
    );
    let key_public = openssl(&["pkey", "-in", key_path.to_str().unwrap(), "-pubout"]);
    let leaf_path = dir.join("svid.pem");
    let cert_public = openssl(&[
        "x509",
        "-in",
        leaf_path.to_str().unwrap(),
        "-noout",
        "-pubkey",
    ]);
    assert_eq!(key_public, cert_public, "the key is the certificate's");

    let bundle = certificates(&std::fs::read(dir.join("bundle.pem")).unwrap());
    assert_eq!(bundle, [root_der.to_vec()]);
}

#[tokio::test]
async fn files_appear_with_the_right_modes_and_verify_independently() {
    let mut setup = Setup::new(None, None, None).await;
    let mut sink = setup.sink();
    sink.jwt_audiences = vec![
        SinkAudience::new(AUDIENCE).unwrap(),
        SinkAudience::new(URL_AUDIENCE).unwrap(),
    ];
    setup.start(sink).await;
    let dir = setup.sink_dir();
    let expected: BTreeSet<String> = [
        "svid.pem",
        "svid_key.pem",
        "bundle.pem",
        AUDIENCE_FILE,
        URL_AUDIENCE_FILE,
    ]
    .map(String::from)
    .into();
    eventually("the sink's files", || async {
        (dir.exists() && names_in(&dir) == expected).then_some(())
    })
    .await;

    assert_eq!(mode(&dir), 0o700, "the directory is created private");
    for (file, want) in [
        ("svid.pem", 0o644),
        ("bundle.pem", 0o644),
        ("svid_key.pem", 0o600),
        (AUDIENCE_FILE, 0o600),
        (URL_AUDIENCE_FILE, 0o600),
    ] {
        assert_eq!(mode(&dir.join(file)), want, "{file}");
    }
    assert_x509_files_are_right(&dir, &setup.root_der());

    // Each JWT file holds a token for its audience, which an independent
    // JOSE library accepts with the keys the broker publishes, and only
    // for that audience.
    let (_, jwks) = setup.broker.http_get("/keys").await;
    for (audience, file) in [(AUDIENCE, AUDIENCE_FILE), (URL_AUDIENCE, URL_AUDIENCE_FILE)] {
        let token = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(
            common::jwt_simple_verify(&jwks, &token, audience).unwrap(),
            workload_id(),
            "{file}"
        );
        assert!(
            common::jwt_simple_verify(&jwks, &token, "another-audience").is_err(),
            "{file} verified for another audience"
        );
    }

    // What was written appears in no Debug output.
    let debug = format!("{:?}", setup.agent());
    let key_line = std::fs::read_to_string(dir.join("svid_key.pem"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    let token = std::fs::read_to_string(dir.join(AUDIENCE_FILE)).unwrap();
    assert!(!debug.contains(&key_line) && !debug.contains(&token));
    setup.shutdown().await;
}

#[tokio::test]
async fn a_renewal_replaces_the_files_and_runs_the_command_only_on_change() {
    // A 20 s X509-SVID is renewed at about 10 s.
    let mut setup = Setup::new(None, Some(20), None).await;
    let runs = setup.dir.path().join("runs");
    std::fs::create_dir(&runs).unwrap();
    let mut sink = setup.sink();
    sink.jwt_audiences = vec![SinkAudience::new(AUDIENCE).unwrap()];
    // No shell: every run leaves one new file in `runs`.
    sink.on_renew_command = Some(
        RenewCommand::new(vec![
            "mktemp".into(),
            "-p".into(),
            runs.display().to_string(),
            "run.XXXXXX".into(),
        ])
        .unwrap(),
    );
    setup.start(sink).await;
    let dir = setup.sink_dir();
    eventually("the first files and one run of the command", || async {
        (count_in(&runs) == 1 && dir.join(AUDIENCE_FILE).exists()).then_some(())
    })
    .await;
    let svid_path = dir.join("svid.pem");
    let first_serial = serial(&chain_in(&dir)[0]);
    let first_inodes = [svid_path.clone(), dir.join("svid_key.pem")].map(|p| inode(&p));
    let first_key = std::fs::read(dir.join("svid_key.pem")).unwrap();
    let token = std::fs::read_to_string(dir.join(AUDIENCE_FILE)).unwrap();

    // Negative: before half life nothing changes, so nothing is written
    // and the command does not run again.
    setup.broker.clock.advance(Duration::from_secs(5));
    setup.let_the_agent_catch_up().await;
    assert_eq!(count_in(&runs), 1, "the command ran without a change");
    assert_eq!(serial(&chain_in(&dir)[0]), first_serial);
    assert_eq!(
        [svid_path.clone(), dir.join("svid_key.pem")].map(|p| inode(&p)),
        first_inodes,
        "unchanged files were rewritten"
    );

    // Positive: past half life the agent renews; the files are replaced
    // (new inodes: renamed into place, not rewritten in place) and the
    // command runs once more.
    setup.broker.clock.advance(Duration::from_secs(6));
    eventually("a renewed svid.pem", || async {
        (serial(&chain_in(&dir)[0]) != first_serial).then_some(())
    })
    .await;
    eventually("the command to run after the renewal", || async {
        (count_in(&runs) == 2).then_some(())
    })
    .await;
    assert_ne!(inode(&svid_path), first_inodes[0]);
    assert_ne!(inode(&dir.join("svid_key.pem")), first_inodes[1]);
    assert_ne!(std::fs::read(dir.join("svid_key.pem")).unwrap(), first_key);
    assert_eq!(mode(&dir.join("svid_key.pem")), 0o600);
    assert_x509_files_are_right(&dir, &setup.root_der());
    // The JWT-SVID (5 minutes) was not due.
    assert_eq!(
        std::fs::read_to_string(dir.join(AUDIENCE_FILE)).unwrap(),
        token
    );
    // No temporary file is left behind, and one renewal is one run.
    let expected: BTreeSet<String> = ["svid.pem", "svid_key.pem", "bundle.pem", AUDIENCE_FILE]
        .map(String::from)
        .into();
    assert_eq!(names_in(&dir), expected);
    setup.let_the_agent_catch_up().await;
    assert_eq!(count_in(&runs), 2);
    setup.shutdown().await;
}

#[tokio::test]
async fn the_jwt_file_is_renewed_at_half_its_life_without_running_the_command() {
    let mut setup = Setup::new(None, None, Some(60)).await;
    let runs = setup.dir.path().join("runs");
    std::fs::create_dir(&runs).unwrap();
    let mut sink = setup.sink();
    sink.jwt_audiences = vec![SinkAudience::new(AUDIENCE).unwrap()];
    sink.on_renew_command =
        Some(RenewCommand::split(&format!("mktemp -p {} run.XXXXXX", runs.display())).unwrap());
    setup.start(sink).await;
    let dir = setup.sink_dir();
    let file = dir.join(AUDIENCE_FILE);
    eventually("the first token and run", || async {
        (file.exists() && count_in(&runs) == 1).then_some(())
    })
    .await;
    let first = std::fs::read_to_string(&file).unwrap();

    // Before half life: the same token stays.
    setup.broker.clock.advance(Duration::from_secs(20));
    setup.let_the_agent_catch_up().await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first);

    // Past half life: a new token, valid for the audience.
    setup.broker.clock.advance(Duration::from_secs(15));
    let renewed = eventually("a renewed token", || async {
        let token = std::fs::read_to_string(&file).ok()?;
        (token != first).then_some(token)
    })
    .await;
    let (_, jwks) = setup.broker.http_get("/keys").await;
    assert_eq!(
        common::jwt_simple_verify(&jwks, &renewed, AUDIENCE).unwrap(),
        workload_id()
    );
    assert_eq!(mode(&file), 0o600);
    // A new JWT-SVID alone does not run the command.
    setup.let_the_agent_catch_up().await;
    assert_eq!(count_in(&runs), 1);
    setup.shutdown().await;
}

#[tokio::test]
async fn the_on_renew_signal_reaches_the_process_in_the_pid_file() {
    let mut setup = Setup::new(None, None, None).await;
    let mut target = Command::new("sleep").arg("300").spawn().unwrap();
    let pid_file = setup.dir.path().join("target.pid");
    std::fs::write(&pid_file, format!("{}\n", target.id())).unwrap();
    // Only the agent's user may write it: it chooses whom the agent signals.
    std::fs::set_permissions(&pid_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut sink = setup.sink();
    sink.on_renew_signal = Some(RenewSignal {
        signal: Signal::Usr1,
        target: SignalTarget::PidFile(pid_file),
    });
    setup.start(sink).await;
    let status = eventually("the signal to reach the process", || {
        let exited = target.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert_eq!(status.signal(), Some(10), "SIGUSR1: {status:?}");
    assert!(setup.sink_dir().join("svid.pem").exists());
    setup.shutdown().await;
}

#[tokio::test]
async fn an_identity_the_agent_process_does_not_prove_is_not_written() {
    // The entry is for another uid than the agent's (this process's).
    let mut setup = Setup::new(Some("unix:uid:4000000000"), None, None).await;
    assert_ne!(setup.uid, 4_000_000_000);
    setup.start(setup.sink()).await;
    eventually("the agent to hold the entry's SVID", || async {
        (setup.agent().health().x509_svids == 1).then_some(())
    })
    .await;
    setup.let_the_agent_catch_up().await;
    assert!(
        !setup.sink_dir().join("svid.pem").exists(),
        "an identity for another uid was written"
    );

    // Positive control: once the entry names the agent's uid, it is.
    setup
        .broker
        .update_entry(
            &setup.workload.id,
            pb::EntrySpec {
                selectors: Some(pb::StringList {
                    values: vec![format!("unix:uid:{}", setup.uid)],
                }),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    let dir = setup.sink_dir();
    eventually("the files for the matching entry", || async {
        dir.join("svid_key.pem").exists().then_some(())
    })
    .await;
    assert_x509_files_are_right(&dir, &setup.root_der());
    setup.shutdown().await;
}

#[tokio::test]
async fn bad_sink_configurations_are_refused_before_the_join_token_is_spent() {
    let mut setup = Setup::new(None, None, None).await;

    // Audiences that cannot name a file.
    for bad in ["café", "two words", "///"] {
        let refused = SinkAudience::new(bad).unwrap_err();
        assert!(matches!(refused, AgentError::Config { .. }));
        assert!(
            refused.to_string().contains("cannot name a file"),
            "{refused}"
        );
    }
    // Two audiences that would share a file.
    let mut colliding = setup.sink();
    colliding.jwt_audiences = vec![
        SinkAudience::new("a:b").unwrap(),
        SinkAudience::new("a/b").unwrap(),
    ];
    let refused = mayfly_agent::start(setup.config(Some(colliding)))
        .await
        .unwrap_err();
    assert!(matches!(refused, AgentError::Config { .. }), "{refused:?}");
    assert!(refused.to_string().contains("jwt_a_b.token"), "{refused}");
    // The agent's data directory, where its own SVID lives.
    let onto_itself = FileSinkConfig::new(setup.data_dir(), workload_id().parse().unwrap());
    let refused = mayfly_agent::start(setup.config(Some(onto_itself)))
        .await
        .unwrap_err();
    assert!(matches!(refused, AgentError::Config { .. }), "{refused:?}");
    assert!(refused.to_string().contains("data directory"), "{refused}");
    assert!(!setup.sink_dir().exists());

    // Positive control: the same join token still works, with a good sink.
    let mut good = setup.sink();
    good.jwt_audiences = vec![
        SinkAudience::new("a:b").unwrap(),
        SinkAudience::new(AUDIENCE).unwrap(),
    ];
    setup.start(good).await;
    let dir = setup.sink_dir();
    eventually("the files", || async {
        dir.join(AUDIENCE_FILE).exists().then_some(())
    })
    .await;
    setup.shutdown().await;
}

/// Runs `mayfly` with `args`, with no MAYFLY_* variable from outside.
fn mayfly(args: &[&str]) -> Output {
    let mut command = Command::new(MAYFLY);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MAYFLY_") {
            command.env_remove(name);
        }
    }
    command.args(args).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn the_mayfly_agent_command_refuses_bad_write_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("agent.sock");
    let socket = socket.to_str().unwrap();
    let out = tmp.path().join("out");
    let out = out.to_str().unwrap();
    let id = workload_id();
    // Missing flags are syntax errors (clap's 2); values the flags refuse
    // are usage errors (64, EX_USAGE).
    let cases: [(&[&str], i32, &str); 7] = [
        (&["--write-dir", out], 2, "--write-spiffe-id"),
        (&["--write-spiffe-id", &id], 2, "--write-dir"),
        (
            &[
                "--write-dir",
                out,
                "--write-spiffe-id",
                &id,
                "--on-renew-signal",
                "HUP",
            ],
            2,
            "--on-renew-pid",
        ),
        (
            &[
                "--write-dir",
                out,
                "--write-spiffe-id",
                &id,
                "--jwt-audience",
                "café",
            ],
            64,
            "cannot name a file",
        ),
        (
            &["--write-dir", out, "--write-spiffe-id", "https://x"],
            64,
            "--write-spiffe-id",
        ),
        (
            &[
                "--write-dir",
                out,
                "--write-spiffe-id",
                &id,
                "--on-renew-signal",
                "KILL",
                "--on-renew-pid",
                "123",
            ],
            64,
            "not allowed",
        ),
        (
            &[
                "--write-dir",
                out,
                "--write-spiffe-id",
                &id,
                "--on-renew-signal",
                "HUP",
                "--on-renew-pid",
                "0",
            ],
            64,
            "not a process id",
        ),
    ];
    for (flags, code, expected) in cases {
        let mut args = vec!["agent", "--socket", socket];
        args.extend_from_slice(flags);
        let output = mayfly(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
    assert!(!Path::new(out).exists(), "nothing is written on a refusal");
}

#[tokio::test]
async fn the_mayfly_agent_command_writes_the_files_and_runs_the_command() {
    let setup = Setup::new(None, None, None).await;
    let tmp = setup.dir.path();
    let bundle = tmp.join("root.pem");
    std::fs::write(&bundle, setup.broker.bundle_pem()).unwrap();
    let token_file = tmp.join("token.txt");
    std::fs::write(&token_file, &setup.token).unwrap();
    let out = setup.sink_dir();
    let copy = tmp.join("copy.pem");
    let command = format!("cp {} {}", out.join("svid.pem").display(), copy.display());
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let mut agent = Command::new(MAYFLY)
        .args(["agent", "--server", &setup.broker.url(), "--bundle"])
        .arg(&bundle)
        .arg("--data-dir")
        .arg(setup.data_dir())
        .args(["--socket", &path(&tmp.join("agent.sock"))])
        .args(["--join-token-file", &path(&token_file)])
        .args(["--write-dir", &path(&out)])
        .args(["--write-spiffe-id", &workload_id()])
        .args(["--jwt-audience", URL_AUDIENCE])
        .args(["--on-renew-command", &command])
        .env_remove("MAYFLY_JOIN_TOKEN")
        .env_remove("MAYFLY_DATA_DIR")
        .env_remove("MAYFLY_BUNDLE")
        .env_remove("MAYFLY_SERVER")
        .env_remove("MAYFLY_AGENT_SOCKET")
        .env("MAYFLY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let copied = eventually("the command's copy of svid.pem", || {
        if let Ok(Some(status)) = agent.try_wait() {
            panic!("mayfly agent exited early: {status}");
        }
        let copied = std::fs::read(&copy).ok();
        async move { copied }
    })
    .await;
    assert_eq!(copied, std::fs::read(out.join("svid.pem")).unwrap());
    assert_x509_files_are_right(&out, &setup.root_der());
    // The token files are written before the command runs.
    assert!(out.join(URL_AUDIENCE_FILE).exists());
    assert_eq!(mode(&out.join(URL_AUDIENCE_FILE)), 0o600);

    Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    let output = agent.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    setup.shutdown().await;
}
