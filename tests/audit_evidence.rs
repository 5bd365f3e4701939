//! The audit log's guarantees of issue 15, shown with the real `mayfly` binary: a broker
//! started as a process with a config file (`[audit] key_dir`, `anchor_file`, `key_epoch`),
//! workloads minting JWT-SVIDs through the SDK, and `mayfly audit …` as an auditor runs it.
//!
//! - `kill -9` under load loses no acknowledged record, and leaves a log that verifies
//!   against the pinned root key and the anchor;
//! - an anchor that cannot be written never blocks issuance, is visible on `/metrics`, and
//!   its recovery is audited once;
//! - a rolled-back or forked log is refused at start (naming the anchor), and accepted only
//!   with a reason, which is audited first and starts a new root key;
//! - every start hands over to a new audit key and erases the old one;
//! - `[audit]` settings that cannot be used stop the server before it starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Read as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mayfly_sdk::proto::v1 as pb;
use tempfile::TempDir;

const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");
const AUDIENCE: &str = "db";
/// How long after its banner a server is given to install its SIGTERM handler.
const SIGNAL_HANDLER_GRACE: Duration = Duration::from_millis(300);
/// How long a test waits for something the broker does in the background.
const PATIENCE: Duration = Duration::from_secs(20);

/// One broker's files: its data directory, its audit key directory (outside the data
/// directory, as the operations guide recommends), a "witness" directory standing for
/// another volume, and the config file.
struct Site {
    root: TempDir,
}

impl Site {
    /// A site whose config has `[audit] key_dir` and the `[audit]` lines of `audit_extra`.
    fn new(audit_extra: &str) -> Site {
        let site = Site {
            root: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(site.witness()).unwrap();
        site.configure(audit_extra);
        site
    }

    /// Rewrites the config file with `audit_extra` in `[audit]`.
    fn configure(&self, audit_extra: &str) {
        let config = format!(
            "trust_domain = \"{}\"\n\n[audit]\nkey_dir = '{}'\n{audit_extra}\n",
            common::TRUST_DOMAIN,
            self.keys().display()
        );
        std::fs::write(self.config(), config).unwrap();
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn audit(&self) -> PathBuf {
        self.data().join("audit")
    }

    fn keys(&self) -> PathBuf {
        self.root.path().join("audit-key")
    }

    fn witness(&self) -> PathBuf {
        self.root.path().join("witness")
    }

    /// The anchor file in the witness directory, as a config line.
    fn anchor_line(&self) -> String {
        format!("anchor_file = '{}'", self.anchor().display())
    }

    fn anchor(&self) -> PathBuf {
        self.witness().join("anchor.json")
    }

    fn config(&self) -> PathBuf {
        self.root.path().join("mayfly.toml")
    }

    fn log_lines(&self) -> Vec<String> {
        complete_lines(&std::fs::read_to_string(self.audit().join("audit.log")).unwrap())
    }

    /// `mayfly --data-dir <data> <args>`.
    fn mayfly(&self, args: &[&str]) -> Output {
        Command::new(MAYFLY)
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .current_dir(self.root.path())
            .env_remove("MAYFLY_DATA_DIR")
            .env_remove("MAYFLY_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `mayfly audit verify` with `args`, (exit code, stdout + stderr).
    fn verify(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut all = vec!["audit", "verify"];
        all.extend_from_slice(args);
        let output = self.mayfly(&all);
        (output.status.code(), text(&output))
    }

    /// The root audit key as `mayfly audit public-key` prints it, kept off the host
    /// (outside the data and key directories) as an auditor would.
    fn pin_root_key(&self, name: &str) -> PathBuf {
        let key_dir = self.keys();
        let output = self.mayfly(&["audit", "public-key", "--key-dir", path(&key_dir)]);
        assert!(output.status.success(), "{}", text(&output));
        let pinned = self.root.path().join(name);
        std::fs::write(&pinned, &output.stdout).unwrap();
        pinned
    }

    /// Starts `mayfly server` and waits for its banner; panics if it does not start.
    fn start(&self) -> Broker {
        self.try_start(&[])
            .unwrap_or_else(|refused| panic!("the server did not start: {refused:?}"))
    }

    /// Starts `mayfly server --config … <extra>`: the running broker once it printed its
    /// banner, or how it exited.
    fn try_start(&self, extra: &[&str]) -> Result<Broker, Refused> {
        let mut child = Command::new(MAYFLY)
            .arg("--data-dir")
            .arg(self.data())
            .arg("server")
            .arg("--config")
            .arg(self.config())
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .current_dir(self.root.path())
            .env_remove("MAYFLY_DATA_DIR")
            .env_remove("MAYFLY_CONFIG")
            .env("MAYFLY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let collected = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                collected
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let receiver = common::line_channel(child.stdout.take().unwrap());
        let mut banner = String::new();
        loop {
            match receiver.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    banner.push_str(&line);
                    banner.push('\n');
                    if line.starts_with("Stop with") {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().unwrap();
                    stderr_reader.join().unwrap();
                    let stderr = stderr.lock().unwrap().clone();
                    return Err(Refused {
                        code: status.code(),
                        stderr,
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("no banner within 60 s: {banner}");
                }
            }
        }
        let word = |label: &str, scheme: &str| {
            banner
                .lines()
                .find(|l| l.trim_start().starts_with(label))
                .and_then(|l| l.split_whitespace().find(|w| w.starts_with(scheme)))
                .unwrap_or_else(|| panic!("no {label} in {banner}"))
                .to_owned()
        };
        let url = word("broker (gRPC)", "https://");
        let http = word("HTTP ", "http://")
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        Ok(Broker {
            ready: Instant::now(),
            child,
            url,
            http,
            bundle: std::fs::read(self.data().join("bundle.pem")).unwrap(),
            admin_socket: self.data().join("admin.sock"),
            stderr,
        })
    }
}

/// How a server that did not start exited.
#[derive(Debug)]
struct Refused {
    code: Option<i32>,
    stderr: String,
}

/// A running `mayfly server` process.
struct Broker {
    /// When it printed its banner.
    ready: Instant,
    child: Child,
    url: String,
    http: SocketAddr,
    bundle: Vec<u8>,
    admin_socket: PathBuf,
    /// What it wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
}

/// A test that fails half-way must not leave its broker running.
impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    /// SIGTERM, and the exit status once it has drained and closed the log.
    fn stop(mut self) -> ExitStatus {
        // `mayfly server` prints its banner before it installs its SIGTERM handler; a
        // signal in between kills it the default way (seen: exit by signal 15). Give it
        // the moment it needs.
        std::thread::sleep(SIGNAL_HANDLER_GRACE.saturating_sub(self.ready.elapsed()));
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "graceful stop: {status:?}: {}",
            self.stderr()
        );
        status
    }

    /// SIGKILL: no drain, no flush, no last checkpoint.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// An entry for the workload (a new `jti` per mint, so every mint is one record to find)
    /// and its X509-SVID, attested with a join token.
    async fn enroll(&self, path: &str) -> Workload {
        let mut admin = mayfly_sdk::client::connect_admin(&self.admin_socket)
            .await
            .unwrap();
        let mut spec = common::TestBroker::entry_spec(path, &[AUDIENCE], &[]);
        spec.unique_jti = Some(true);
        let entry = admin
            .create_entry(pb::CreateEntryRequest { spec: Some(spec) })
            .await
            .unwrap()
            .into_inner();
        let token = admin
            .create_join_token(pb::CreateJoinTokenRequest {
                entry_id: entry.id,
                ttl_seconds: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        let anonymous = mayfly_sdk::client::connect_broker(&self.url, &self.bundle, None)
            .await
            .unwrap();
        let svid = common::attest_via(anonymous, &token).await.unwrap();
        Workload {
            chain_pem: svid.chain_pem,
            key_pem: svid.key_pem,
        }
    }

    async fn client(
        &self,
        workload: &Workload,
    ) -> mayfly_sdk::proto::v1::broker_client::BrokerClient<tonic::transport::Channel> {
        connect_as(&self.url, &self.bundle, workload).await.unwrap()
    }

    /// `/metrics` on the HTTP port.
    async fn metrics(&self) -> String {
        let (status, body) = common::http_get(self.http, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// A workload's X509-SVID, to mint with.
#[derive(Clone)]
struct Workload {
    chain_pem: String,
    key_pem: String,
}

async fn connect_as(
    url: &str,
    bundle: &[u8],
    workload: &Workload,
) -> Result<
    mayfly_sdk::proto::v1::broker_client::BrokerClient<tonic::transport::Channel>,
    mayfly_sdk::client::ClientError,
> {
    mayfly_sdk::client::connect_broker(
        url,
        bundle,
        Some((workload.chain_pem.as_bytes(), workload.key_pem.as_bytes())),
    )
    .await
}

/// Mints one JWT-SVID; the `jti` the broker answered with, checked against the token's.
async fn mint(
    client: &mayfly_sdk::proto::v1::broker_client::BrokerClient<tonic::transport::Channel>,
) -> Result<String, tonic::Status> {
    let response = common::mint_via(client.clone(), AUDIENCE, 0).await?;
    assert_eq!(jti_of(&response.token), response.jti, "the jti answered");
    Ok(response.jti)
}

/// The `jti` claim of a JWT, read from its payload.
fn jti_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// Mints until the broker stops answering, adding each `jti` the broker acknowledged to
/// `acknowledged`; returns why it stopped.
async fn keep_minting(
    url: String,
    bundle: Vec<u8>,
    workload: Workload,
    acknowledged: Arc<Mutex<Vec<String>>>,
) -> String {
    let client = match connect_as(&url, &bundle, &workload).await {
        Ok(client) => client,
        Err(e) => return format!("connect: {e}"),
    };
    loop {
        match mint(&client).await {
            Ok(jti) => acknowledged.lock().unwrap().push(jti),
            Err(status) => return format!("{status:?}"),
        }
    }
}

/// The lines of a log with a final newline; a last line without one (a write `kill -9`
/// interrupted, never acknowledged) is left out.
fn complete_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|l| l.trim_end_matches('\n').to_owned())
        .collect()
}

/// The `jti` of every granted `jwt.mint` record of the log.
fn logged_jtis(site: &Site) -> BTreeSet<String> {
    site.log_lines()
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["action"] == "jwt.mint" && record["outcome"] == "granted")
        .map(|record| record["jti"].as_str().unwrap().to_owned())
        .collect()
}

/// The records of `mayfly audit tail --json -n 100000`.
fn tail(site: &Site) -> Vec<serde_json::Value> {
    let output = site.mayfly(&["audit", "tail", "--json", "-n", "100000"]);
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The value of a counter sample whose line starts with `name{` and holds `label`, or 0
/// when there is none (no increment yet).
fn counter(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Copies the files of `from` into `to` (created), replacing what is there.
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Replaces the directory `dir` with the files of `copy`, as a restore from a backup does.
fn restore(copy: &Path, dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::create_dir(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    copy_files(copy, dir);
}

/// Files in `dir` whose names are not in `expected`.
fn unexpected_files(dir: &Path, expected: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !expected.contains(&name.as_str()))
        .collect();
    found.sort();
    found
}

/// A random number in `low..=high`, from the standard library's per-process random hash
/// keys (the crate has no `rand` dependency; this needs no quality beyond "not chosen").
fn random_between(low: u64, high: u64) -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    low + hasher.finish() % (high - low + 1)
}

/// The audit key file's private key as PKCS#8 v1 DER, which `openssl` reads: the file holds
/// the v2 form (RFC 5958, with the public key), whose 32-byte seed is the OCTET STRING
/// after the Ed25519 algorithm identifier (RFC 8410).
fn openssl_private_key(key_file: &Path, to: &Path) {
    use base64::Engine as _;
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(key_file).unwrap()).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(key["pkcs8"].as_str().unwrap())
        .unwrap();
    const ED25519_SEED: [u8; 9] = [0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    let at = der
        .windows(ED25519_SEED.len())
        .position(|w| w == ED25519_SEED)
        .unwrap()
        + ED25519_SEED.len();
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v1.extend_from_slice(&der[at..at + 32]);
    std::fs::write(to, v1).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

// ---------------------------------------------------------------------------------------
// 1. kill -9

/// `kill -9` at random moments of a minting load, six times: after each, every mint the
/// client was told succeeded has its record (its `jti`) in the log, `mayfly audit verify`
/// against the root key pinned at the first start and the anchored checkpoint exits 0,
/// and the server starts again on the same directories (which compares the log with the
/// anchor and the key). No file is left behind but the temporary file of an atomic write
/// the kill interrupted (reported, and none of them holds a key).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_acknowledged_record_and_the_log_verifies() {
    const ROUNDS: usize = 6;
    const MINTERS: usize = 3;
    let site = Site::new("");
    site.configure(&site.anchor_line());
    let mut broker = site.start();
    let pinned = site.pin_root_key("pinned-root.pub");
    let workload = broker.enroll("/api").await;
    let mut acknowledged = BTreeSet::new();
    let mut leftovers = Vec::new();
    for round in 1..=ROUNDS {
        let got = Arc::new(Mutex::new(Vec::new()));
        let minters: Vec<_> = (0..MINTERS)
            .map(|_| {
                tokio::spawn(keep_minting(
                    broker.url.clone(),
                    broker.bundle.clone(),
                    workload.clone(),
                    Arc::clone(&got),
                ))
            })
            .collect();
        // The load is on: the first mint of the round came back.
        let deadline = Instant::now() + PATIENCE;
        while got.lock().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "round {round}: no mint succeeded"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delay = Duration::from_millis(random_between(50, 1500));
        tokio::time::sleep(delay).await;
        broker.kill_9();
        let mut stopped = Vec::new();
        for minter in minters {
            stopped.push(minter.await.unwrap());
        }
        let minted: Vec<String> = got.lock().unwrap().clone();
        let signed = mayfly::audit::read_checkpoint(&site.audit().join("checkpoint.json"))
            .unwrap()
            .seq;
        let anchored = mayfly::audit::read_checkpoint(&site.anchor()).unwrap().seq;
        eprintln!(
            "round {round}: killed after {delay:?} of load, {} mints acknowledged; log head \
             seq {}, checkpoint seq {signed}, anchor seq {anchored}; the minters stopped \
             with: {:?}",
            minted.len(),
            head_seq(&site),
            stopped.first()
        );
        acknowledged.extend(minted);

        let logged = logged_jtis(&site);
        let lost: Vec<&String> = acknowledged.difference(&logged).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged mints are not in the log: {lost:?}",
            lost.len()
        );
        let (code, report) = site.verify(&[
            "--public-key",
            path(&pinned),
            "--checkpoint",
            path(&site.anchor()),
        ]);
        assert_eq!(code, Some(0), "round {round}: {report}");
        assert!(
            report.contains("(pinned)") && report.contains("continues each of the 1"),
            "{report}"
        );

        // What the kill left in the three directories.
        for (dir, expected) in [
            (
                site.audit(),
                &["audit.log", "audit.lock", "checkpoint.json", "keys.jsonl"][..],
            ),
            (site.keys(), &["audit-key.json", "audit-root.pub"][..]),
            (site.witness(), &["anchor.json"][..]),
        ] {
            for name in unexpected_files(&dir, expected) {
                assert!(
                    name.starts_with('.') && name.ends_with(".tmp"),
                    "round {round}: {name} left in {}",
                    dir.display()
                );
                assert!(
                    !name.contains("key"),
                    "round {round}: a key's temporary file {name} left in {}",
                    dir.display()
                );
                leftovers.push(format!("{}/{name}", dir.display()));
            }
        }
        broker = site.start();
    }
    // The last start continues the log, and a graceful stop leaves it verified.
    let client = broker.client(&workload).await;
    acknowledged.insert(mint(&client).await.unwrap());
    broker.stop();
    let logged = logged_jtis(&site);
    assert!(acknowledged.is_subset(&logged));
    let (code, report) = site.verify(&["--public-key", path(&pinned)]);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        !site.keys().join("audit-key.next.json").exists(),
        "no half-done hand-over left"
    );
    eprintln!(
        "{} acknowledged mints over {ROUNDS} kills, {} mint records in the log; temporary \
         files left behind by the kills: {leftovers:?}",
        acknowledged.len(),
        logged.len()
    );
}

// ---------------------------------------------------------------------------------------
// 2. The anchor away

const ANCHOR_WRITES: &str = "mayfly_audit_anchor_writes_total";
const FAILED: &str = "outcome=\"failed\"";
const OK: &str = "outcome=\"ok\"";

/// Mints one JWT-SVID every 100 ms until `done` holds (the log moves, so checkpoints are
/// signed and anchored), at most [`PATIENCE`]; returns how long it took.
async fn mint_until<F, Fut>(client: &TestClient, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < PATIENCE, "not within {PATIENCE:?}");
        mint(client).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

type TestClient = mayfly_sdk::proto::v1::broker_client::BrokerClient<tonic::transport::Channel>;

fn recovered_records(site: &Site) -> Vec<serde_json::Value> {
    tail(site)
        .into_iter()
        .filter(|record| record["action"] == "audit.anchor.recovered")
        .collect()
}

/// `[audit] anchor_file` in a directory that does not exist: the broker starts and mints,
/// `/metrics` counts the failed anchor writes; once the directory appears the anchor is
/// written within seconds, counted as ok, and one `audit.anchor.recovered` record says
/// what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_that_cannot_be_written_never_blocks_issuance_and_its_recovery_is_audited() {
    let site = Site::new("");
    let away = site.witness().join("not-mounted-yet");
    let anchor = away.join("anchor.json");
    site.configure(&format!("anchor_file = '{}'", anchor.display()));
    let broker = site.start();
    let workload = broker.enroll("/api").await;
    let client = broker.client(&workload).await;
    for _ in 0..3 {
        mint(&client).await.unwrap();
    }
    mint_until(&client, || async {
        counter(&broker.metrics().await, ANCHOR_WRITES, FAILED) > 0.0
    })
    .await;
    let metrics = broker.metrics().await;
    assert_eq!(counter(&metrics, ANCHOR_WRITES, OK), 0.0, "{metrics}");
    assert!(!anchor.exists());
    assert!(recovered_records(&site).is_empty(), "nothing recovered yet");
    // Issuance went on: every mint so far is in the log.
    assert!(logged_jtis(&site).len() >= 3);

    // The volume comes back.
    std::fs::create_dir(&away).unwrap();
    let took = mint_until(&client, || async {
        anchor.exists()
            && counter(&broker.metrics().await, ANCHOR_WRITES, OK) > 0.0
            && !recovered_records(&site).is_empty()
    })
    .await;
    assert!(
        took < Duration::from_secs(5),
        "anchored again after {took:?}"
    );
    // More checkpoints, still one recovery record.
    for _ in 0..5 {
        mint(&client).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let recovered = recovered_records(&site);
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let record = &recovered[0];
    assert_eq!(record["actor"], "mayfly-audit");
    assert!(
        record["reason"].as_str().unwrap().contains(path(&anchor)),
        "the first error names the anchor: {record}"
    );
    assert!(
        record["detail"]["failed_writes"].as_u64().unwrap() >= 1,
        "{record}"
    );
    broker.stop();
    // The anchor is a signed checkpoint of this log.
    let (code, report) = site.verify(&["--checkpoint", path(&anchor)]);
    assert_eq!(code, Some(0), "{report}");
}

/// The control: an anchor that works from the start is counted ok, never failed, and
/// leaves no recovery record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_that_works_from_the_start_counts_ok_only() {
    let site = Site::new("");
    site.configure(&site.anchor_line());
    let broker = site.start();
    let workload = broker.enroll("/api").await;
    let client = broker.client(&workload).await;
    mint_until(&client, || async {
        counter(&broker.metrics().await, ANCHOR_WRITES, OK) >= 2.0
    })
    .await;
    let metrics = broker.metrics().await;
    assert_eq!(counter(&metrics, ANCHOR_WRITES, FAILED), 0.0, "{metrics}");
    assert!(site.anchor().exists());
    assert!(recovered_records(&site).is_empty());
    broker.stop();
    let (code, report) = site.verify(&["--checkpoint", path(&site.anchor())]);
    assert_eq!(code, Some(0), "{report}");
}

// ---------------------------------------------------------------------------------------
// 3. Rollback and fork

/// The seq of the last record of the log.
fn head_seq(site: &Site) -> u64 {
    let lines = site.log_lines();
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    last["seq"].as_u64().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// A record line's hash as the writer computes it: SHA-256 of the line without its `hash`
/// field (the last one). Returns the line without the field, and the stored hash.
fn split_hash(line: &str) -> (&str, &str) {
    let (body, hash) = line.rsplit_once(",\"hash\":\"").unwrap();
    (body, hash.trim_end_matches("\"}"))
}

/// The insider who can write the data directory and read the audit key: the text `from`
/// in record `seq` becomes `to`, every hash and `prev` from there on is recomputed, and
/// `checkpoint.json` is re-signed over the new head and Merkle root with the key of the
/// current epoch (from `audit-key.json`, signed by `openssl pkeyutl`, not by mayfly).
fn forge(site: &Site, seq: u64, from: &str, to: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let lines = site.log_lines();
    // The method is the writer's: it reproduces every stored hash of the untouched log.
    for line in &lines {
        let (body, hash) = split_hash(line);
        assert_eq!(sha256_hex(format!("{body}}}").as_bytes()), hash, "{line}");
    }
    let mut forged = Vec::new();
    let mut relinked: Option<(String, String)> = None;
    for line in lines {
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        let record_seq = record["seq"].as_u64().unwrap();
        let mut line = line.clone();
        if record_seq == seq {
            assert!(line.contains(from), "{line}");
            line = line.replacen(from, to, 1);
        }
        if let Some((old, new)) = &relinked {
            line = line.replacen(
                &format!("\"prev\":\"{old}\""),
                &format!("\"prev\":\"{new}\""),
                1,
            );
        }
        if record_seq >= seq {
            let (body, old) = split_hash(&line);
            let (body, old) = (body.to_owned(), old.to_owned());
            let hash = sha256_hex(format!("{body}}}").as_bytes());
            line = format!("{body},\"hash\":\"{hash}\"}}");
            relinked = Some((old, hash));
        }
        forged.push(line);
    }
    let leaves: Vec<_> = forged
        .iter()
        .map(|line| mayfly::audit::merkle::leaf_hash(line.as_bytes()))
        .collect();
    let root = mayfly::audit::merkle::root(&leaves);
    let (_, head) = split_hash(forged.last().unwrap());

    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.keys().join("audit-key.json")).unwrap())
            .unwrap();
    let checkpoint_path = site.audit().join("checkpoint.json");
    let mut checkpoint: mayfly::audit::SignedCheckpoint =
        serde_json::from_slice(&std::fs::read(&checkpoint_path).unwrap()).unwrap();
    assert_eq!(
        checkpoint.seq,
        forged.len() as u64,
        "signed through the end"
    );
    assert_eq!(
        Some(checkpoint.epoch),
        key["epoch"].as_u64(),
        "the key in force"
    );
    checkpoint.hash = head.to_owned();
    checkpoint.root = mayfly::audit::merkle::to_hex(&root);
    let work = tempfile::tempdir().unwrap();
    let der = work.path().join("key.der");
    openssl_private_key(&site.keys().join("audit-key.json"), &der);
    let body = work.path().join("body");
    std::fs::write(&body, mayfly::audit::checkpoint_body(&checkpoint)).unwrap();
    let signature = work.path().join("signature");
    let signed = Command::new("openssl")
        .args(["pkeyutl", "-sign", "-rawin", "-keyform", "DER", "-inkey"])
        .arg(&der)
        .arg("-in")
        .arg(&body)
        .arg("-out")
        .arg(&signature)
        .output()
        .expect("openssl is needed for this test");
    assert!(signed.status.success(), "{}", text(&signed));
    checkpoint.signature = b64.encode(std::fs::read(&signature).unwrap());

    let mut log = forged.join("\n");
    log.push('\n');
    std::fs::write(site.audit().join("audit.log"), log).unwrap();
    std::fs::write(&checkpoint_path, serde_json::to_vec(&checkpoint).unwrap()).unwrap();
}

/// A broker with an anchor runs twice; then the audit directory is (a) rolled back to a
/// copy taken between the runs, (b) forked by an insider who rewrites a record of the
/// current key epoch and re-signs the checkpoint with the current key. Both verify on
/// their own, both are refused at start naming the anchor and the seqs, and `audit verify
/// --checkpoint <anchor>` names what happened. Restarting the rolled-back log with
/// `--accept-audit-rollback <reason>` works: the reason is the first record after the
/// restored head, the log verifies against the old pinned root with the restart noted,
/// and a new root key starts. An empty or too short reason is a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_or_forked_log_is_refused_at_start_and_accepted_only_with_a_reason() {
    let site = Site::new("");
    site.configure(&site.anchor_line());
    let anchor = site.anchor();
    let broker = site.start();
    let pinned = site.pin_root_key("pinned-root.pub");
    let workload = broker.enroll("/api").await;
    let client = broker.client(&workload).await;
    for _ in 0..3 {
        mint(&client).await.unwrap();
    }
    broker.stop();
    let backup = site.root.path().join("backup");
    copy_files(&site.audit(), &backup);
    let backup_head = head_seq(&site);

    // The second run starts on the log its anchor holds: the control for what follows.
    let broker = site.start();
    let client = broker.client(&workload).await;
    for _ in 0..3 {
        mint(&client).await.unwrap();
    }
    broker.stop();
    let current = site.root.path().join("current");
    copy_files(&site.audit(), &current);
    let head = head_seq(&site);
    let anchored = mayfly::audit::read_checkpoint(&anchor).unwrap();
    assert_eq!(
        anchored.seq, head,
        "the last checkpoint was anchored at the stop"
    );
    assert!(head > backup_head);

    // (a) Rolled back to the backup.
    restore(&backup, &site.audit());
    let (code, report) = site.verify(&[]);
    assert_eq!(code, Some(0), "on its own the old log is intact: {report}");
    let (code, report) = site.verify(&["--checkpoint", path(&anchor)]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains(&format!(
            "log ends at seq {backup_head} but the checkpoint says the head is seq {head}: \
             the log was truncated"
        )),
        "{report}"
    );
    let refused = site
        .try_start(&[])
        .err()
        .expect("a rolled-back log is refused");
    assert_eq!(refused.code, Some(1), "{refused:?}");
    for needle in [
        path(&anchor),
        &format!("seq {head}"),
        &format!("seq {backup_head}"),
        "truncated",
        "--accept-audit-rollback",
    ] {
        assert!(
            refused.stderr.contains(needle),
            "{needle}: {}",
            refused.stderr
        );
    }

    // (b) Forked: the current log, one record of the current key epoch rewritten.
    restore(&current, &site.audit());
    let (code, report) = site.verify(&["--checkpoint", path(&anchor)]);
    assert_eq!(
        code,
        Some(0),
        "control: the true log continues its anchor: {report}"
    );
    let keys = std::fs::read_to_string(site.audit().join("keys.jsonl")).unwrap();
    let last_handover: serde_json::Value =
        serde_json::from_str(keys.lines().last().unwrap()).unwrap();
    let epoch_since = last_handover["size"].as_u64().unwrap();
    let target = site
        .log_lines()
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["action"] == "jwt.mint")
        .map(|record| record["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(target > epoch_since, "a record of the current epoch");
    forge(
        &site,
        target,
        "\"audience\":\"db\"",
        "\"audience\":\"ledger\"",
    );
    let (code, report) = site.verify(&["--public-key", path(&pinned)]);
    assert_eq!(code, Some(0), "on its own the forgery holds: {report}");
    let (code, report) = site.verify(&["--checkpoint", path(&anchor)]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains(&format!("records up to seq {head} were rewritten")),
        "{report}"
    );
    let refused = site.try_start(&[]).err().expect("a forked log is refused");
    assert_eq!(refused.code, Some(1), "{refused:?}");
    for needle in [
        path(&anchor),
        &format!("seq {head}"),
        "rewritten",
        "--accept-audit-rollback",
    ] {
        assert!(
            refused.stderr.contains(needle),
            "{needle}: {}",
            refused.stderr
        );
    }

    // Accepted, with a reason, on the restored backup.
    restore(&backup, &site.audit());
    for bad in ["", "INC-1"] {
        let refused = site
            .try_start(&["--accept-audit-rollback", bad])
            .err()
            .expect("a usage error");
        assert_eq!(refused.code, Some(64), "{bad:?}: {refused:?}");
        assert!(refused.stderr.contains("8 characters"), "{refused:?}");
    }
    let reason = "restored from backup, INC-1";
    let broker = site
        .try_start(&["--accept-audit-rollback", reason])
        .unwrap_or_else(|refused| panic!("{refused:?}"));
    let client = broker.client(&workload).await;
    mint(&client).await.unwrap();
    broker.stop();
    let records = tail(&site);
    let accepted = records
        .iter()
        .find(|record| record["seq"] == backup_head + 1)
        .unwrap();
    assert_eq!(
        accepted["action"], "audit.divergence.accepted",
        "{accepted}"
    );
    assert_eq!(accepted["reason"], reason, "{accepted}");
    assert!(
        accepted["detail"]["found"]
            .to_string()
            .contains(path(&anchor)),
        "what was found names the anchor: {accepted}"
    );
    let (code, report) = site.verify(&["--public-key", path(&pinned)]);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("note:") && report.contains("restarts") && report.contains(reason),
        "{report}"
    );
    let new_root = site.mayfly(&["audit", "public-key", "--key-dir", path(&site.keys())]);
    assert!(new_root.status.success(), "{}", text(&new_root));
    assert_ne!(
        new_root.stdout,
        std::fs::read(&pinned).unwrap(),
        "a new root key"
    );
    // From here on the log continues its anchor again: a plain start works.
    site.start().stop();
}

// ---------------------------------------------------------------------------------------
// 4. The key moves on

/// Whether any file in `dir` holds `needle`.
fn held_in(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .collect()
}

/// Three starts, three key epochs: `keys.jsonl` grows by one hand-over per start (each but
/// the root signed), `audit-key.json` is 0600 and holds the newest epoch's key, the old
/// private keys are gone from every file of the key and audit directories, and
/// `audit-root.pub` never changes. (`key_epoch` is at least a minute, too slow for a test:
/// a start begins an epoch as the schedule does.)
#[test]
fn every_start_hands_over_to_a_new_key_and_erases_the_old_one() {
    use base64::Engine as _;
    let site = Site::new("key_epoch = \"1m\"");
    let mut root_pub = None;
    let mut old_keys: Vec<(String, Vec<u8>)> = Vec::new();
    for start in 1..=3u64 {
        site.start().stop();
        let keys = std::fs::read_to_string(site.audit().join("keys.jsonl")).unwrap();
        let handovers: Vec<serde_json::Value> = keys
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(handovers.len() as u64, start, "{keys}");
        for (epoch, handover) in handovers.iter().enumerate() {
            assert_eq!(handover["epoch"], epoch as u64, "{handover}");
            assert_eq!(handover["signature"].is_string(), epoch > 0, "{handover}");
        }
        let key_path = site.keys().join("audit-key.json");
        assert_eq!(mode_of(&key_path), 0o600);
        assert_eq!(mode_of(&site.keys()), 0o700);
        let key: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&key_path).unwrap()).unwrap();
        assert_eq!(key["epoch"], start - 1);
        let pkcs8 = key["pkcs8"].as_str().unwrap().to_owned();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&pkcs8)
            .unwrap();
        // The key file's private key is the one the last hand-over names (openssl derives
        // its public half).
        let work = tempfile::tempdir().unwrap();
        openssl_private_key(&key_path, &work.path().join("key.der"));
        let public = Command::new("openssl")
            .args([
                "pkey", "-inform", "DER", "-pubout", "-outform", "DER", "-in",
            ])
            .arg(work.path().join("key.der"))
            .output()
            .expect("openssl is needed for this test");
        assert!(public.status.success(), "{}", text(&public));
        let raw = &public.stdout[public.stdout.len() - 32..];
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(raw),
            handovers.last().unwrap()["public_key"].as_str().unwrap()
        );
        for (old, old_der) in &old_keys {
            for dir in [site.keys(), site.audit()] {
                assert!(held_in(&dir, old.as_bytes()).is_empty(), "an old key left");
                assert!(held_in(&dir, old_der).is_empty(), "an old key left");
            }
        }
        old_keys.push((pkcs8, der));
        let root = std::fs::read(site.keys().join("audit-root.pub")).unwrap();
        assert_eq!(*root_pub.get_or_insert_with(|| root.clone()), root);
        // The control for the search: the current key is found where it is.
        assert_eq!(
            held_in(&site.keys(), old_keys.last().unwrap().0.as_bytes()),
            vec![key_path]
        );
    }
    let pinned = site.root.path().join("pinned.pub");
    std::fs::write(&pinned, root_pub.unwrap()).unwrap();
    let (code, report) = site.verify(&["--public-key", path(&pinned)]);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("key epoch 2 of root key"), "{report}");
}

// ---------------------------------------------------------------------------------------
// 5. Settings that cannot be used

/// `[audit] key_epoch = "5s"` and an unknown key in `[audit]` stop the server with exit 64
/// and the setting named, before anything is created; the control, `key_epoch = "1m"`,
/// starts.
#[test]
fn audit_settings_that_cannot_be_used_stop_the_server_before_it_starts() {
    let site = Site::new("key_epoch = \"5s\"");
    let refused = site.try_start(&[]).err().expect("refused");
    assert_eq!(refused.code, Some(64), "{refused:?}");
    assert!(refused.stderr.contains("audit.key_epoch"), "{refused:?}");
    assert!(!site.data().exists() && !site.keys().exists());

    site.configure("anchor = '/mnt/witness/anchor.json'");
    let refused = site.try_start(&[]).err().expect("refused");
    assert_eq!(refused.code, Some(64), "{refused:?}");
    assert!(
        refused.stderr.contains("unknown field") && refused.stderr.contains("anchor"),
        "{refused:?}"
    );
    assert!(!site.data().exists() && !site.keys().exists());

    site.configure("key_epoch = \"1m\"");
    site.start().stop();
    assert!(site.keys().join("audit-key.json").exists());
}

// ---------------------------------------------------------------------------------------
// 6. Segments

/// Rebuilds a sealed segment's Merkle root from its seal's frontier and its lines with
/// python3's hashlib, checking each record's hash and `prev` link on the way: nothing of
/// this crate reads the segment. Prints the root.
const SEGMENT_SCRIPT: &str = r#"
import hashlib, json, sys
seal = json.load(open(sys.argv[2]))
def h(*parts): return hashlib.sha256(b"".join(parts)).digest()
size, peaks = seal["first"] - 1, [bytes.fromhex(p) for p in seal["start"]]
if len(peaks) != bin(size).count("1"): sys.exit("frontier shape")
prev, seq = seal["prev"], seal["first"]
for line in open(sys.argv[1], "rb").read().split(b"\n")[:-1]:
    record = json.loads(line)
    cut = line.rindex(b',"hash":"')
    if hashlib.sha256(line[:cut] + b"}").hexdigest() != record["hash"]: sys.exit(f"hash of {seq}")
    if record["seq"] != seq or record["prev"] != prev: sys.exit(f"chain at {seq}")
    carry, bits = h(b"\x00", line), size
    while bits & 1:
        carry = h(b"\x01", peaks.pop(), carry); bits >>= 1
    peaks.append(carry); size += 1
    prev, seq = record["hash"], seq + 1
if size != seal["last"] or prev != seal["checkpoint"]["hash"]: sys.exit("end")
root = peaks[-1]
for left in reversed(peaks[:-1]): root = h(b"\x01", left, root)
print(root.hex())
"#;

/// With `[audit] segment_max_size = "4KiB"`, a running broker seals its log into segments
/// while workloads mint; the chain runs on across them and the log verifies against the
/// pinned key. Each segment verifies on its own with `mayfly audit verify-segment`, and
/// independently: python3 rebuilds its root from the seal's frontier and its records, and
/// openssl checks the seal's signature with the key of its epoch. An edited record in a
/// segment is named by both commands (file and seq), next to the untouched control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_broker_seals_segments_that_each_verify_alone_and_independently() {
    use base64::Engine as _;
    let site = Site::new("segment_max_size = \"4KiB\"");
    let broker = site.start();
    let workload = broker.enroll("/segments").await;
    let client = broker.client(&workload).await;
    let mut jtis = BTreeSet::new();
    for _ in 0..40 {
        jtis.insert(mint(&client).await.unwrap());
    }
    broker.stop();
    let pinned = site.pin_root_key("pinned-root.pub");

    let (code, out) = site.verify(&["--public-key", path(&pinned)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("sealed segment(s) and audit.log"), "{out}");
    // Every mint is in the log, whichever file holds it.
    let logged: BTreeSet<String> = tail(&site)
        .iter()
        .filter(|record| record["action"] == "jwt.mint")
        .map(|record| record["jti"].as_str().unwrap().to_owned())
        .collect();
    assert!(jtis.is_subset(&logged), "every mint is audited");

    let segments = site.audit().join("segments");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 3, "40 mints in 4 KiB segments: {logs:?}");
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("segment.py");
    std::fs::write(&script, SEGMENT_SCRIPT).unwrap();
    for log in &logs {
        let output = Command::new(MAYFLY)
            .args(["audit", "verify-segment"])
            .arg(log)
            .arg("--public-key")
            .arg(&pinned)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        assert!(
            text(&output).contains("segment OK: records"),
            "{}",
            text(&output)
        );

        let seal_path = log.with_extension("seal.json");
        let seal: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&seal_path).unwrap()).unwrap();
        let python = Command::new("python3")
            .arg(&script)
            .arg(log)
            .arg(&seal_path)
            .output()
            .expect("python3 is needed for this test");
        assert!(python.status.success(), "{}", text(&python));
        let root = String::from_utf8(python.stdout).unwrap();
        assert_eq!(root.trim(), seal["checkpoint"]["root"], "python's root");

        // The key of the seal's epoch (the last hand-over it carries), as openssl reads it.
        let checkpoint: mayfly::audit::SignedCheckpoint =
            serde_json::from_value(seal["checkpoint"].clone()).unwrap();
        let keys = seal["keys"].as_array().unwrap();
        let signer = keys.last().unwrap();
        assert_eq!(signer["epoch"], seal["checkpoint"]["epoch"]);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(signer["public_key"].as_str().unwrap())
            .unwrap();
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(&raw);
        std::fs::write(work.path().join("key.der"), spki).unwrap();
        std::fs::write(
            work.path().join("body"),
            mayfly::audit::checkpoint_body(&checkpoint),
        )
        .unwrap();
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&checkpoint.signature)
            .unwrap();
        std::fs::write(work.path().join("sig"), signature).unwrap();
        let openssl = Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-rawin"])
            .arg("-inkey")
            .arg(work.path().join("key.der"))
            .arg("-in")
            .arg(work.path().join("body"))
            .arg("-sigfile")
            .arg(work.path().join("sig"))
            .output()
            .expect("openssl is needed for this test");
        assert!(openssl.status.success(), "{}", text(&openssl));
    }

    // An edited record in the second segment, its own hash recomputed.
    let target = &logs[1];
    let original = std::fs::read_to_string(target).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    let record: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    let seq = record["seq"].as_u64().unwrap();
    let (body, _) = split_hash(&lines[2]);
    let edited = body.replacen("\"outcome\":\"granted\"", "\"outcome\":\"refused\"", 1);
    assert_ne!(edited, body, "{body}");
    lines[2] = format!(
        "{edited},\"hash\":\"{}\"}}",
        sha256_hex(format!("{edited}}}").as_bytes())
    );
    std::fs::write(target, lines.join("\n") + "\n").unwrap();
    let output = Command::new(MAYFLY)
        .args(["audit", "verify-segment"])
        .arg(target)
        .arg("--public-key")
        .arg(&pinned)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("does NOT hold"), "{}", text(&output));
    let (code, out) = site.verify(&["--public-key", path(&pinned)]);
    assert_eq!(code, Some(1), "{out}");
    let name = target.file_name().unwrap().to_str().unwrap();
    assert!(
        out.contains(&format!("segments/{name} line"))
            && out.contains(&format!("(seq {}", seq + 1)),
        "the next record's link names the file and seq: {out}"
    );
    // Control: restored, both hold again.
    std::fs::write(target, original).unwrap();
    assert_eq!(site.verify(&["--public-key", path(&pinned)]).0, Some(0));
}
