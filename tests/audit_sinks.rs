//! The audit log's anchor sinks outside the host (issue 15), with real components: the
//! broker (`server::start`), a witness server over HTTP (axum) that keeps what is POSTed
//! and answers GET with the last record, a real syslog daemon (`rsyslogd`, unprivileged,
//! in the foreground), `mayfly status` and `mayfly audit verify` as the binary runs them,
//! and `openssl` checking a checkpoint's signature on its own.
//!
//! - HTTP: the checkpoints the witness keeps verify against `audit-root.pub` through the
//!   key chain; a witness that answers 500, or a port nobody listens on, never stops
//!   minting, shows in `mayfly status` and in the metric, and its recovery is one
//!   `audit.anchor.recovered` record naming `http`; a data directory rolled back behind
//!   what the witness holds is refused at start naming `http anchor`, and starts with
//!   `--accept-audit-rollback`; a stopping broker sends the witness the checkpoint its log
//!   wrote at the close.
//! - syslog: rsyslogd receives each checkpoint as an RFC 5424 message whose MSG verifies.
//!   Without `rsyslogd` the test is skipped with a reason, or fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::TestBroker;
use mayfly::anchor::{AnchorUrl, HttpAnchorConfig, SyslogTarget};
use mayfly::audit::{AuditPublicKey, Handover, SignedCheckpoint, check_foreign};
use mayfly::config::Config;
use mayfly::store::AuditAnchorRecord;
use mayfly_sdk::proto::v1 as pb;

const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");
const AUDIENCE: &str = "db";
/// How long a test waits for something the broker does in the background.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The witness

/// A witness server: keeps every record POSTed (each read strictly, as a witness must),
/// answers GET with the last one (404 before any), and answers POSTs with `failing` while
/// it is set.
#[derive(Default)]
struct Witness {
    records: Mutex<Vec<AuditAnchorRecord>>,
    failing: Mutex<Option<u16>>,
}

async fn keep(State(witness): State<Arc<Witness>>, body: Bytes) -> StatusCode {
    if let Some(status) = *witness.failing.lock().unwrap() {
        return StatusCode::from_u16(status).unwrap();
    }
    match serde_json::from_slice::<AuditAnchorRecord>(&body) {
        Ok(record) => {
            witness.records.lock().unwrap().push(record);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn last(State(witness): State<Arc<Witness>>) -> (StatusCode, Vec<u8>) {
    match witness.records.lock().unwrap().last() {
        Some(record) => (StatusCode::OK, serde_json::to_vec(record).unwrap()),
        None => (StatusCode::NOT_FOUND, Vec::new()),
    }
}

impl Witness {
    /// Serves on `listener`; the URL of this replica's record.
    fn serve(self: &Arc<Self>, listener: tokio::net::TcpListener) -> String {
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/mayfly/replica-a", post(keep).get(last))
            .with_state(Arc::clone(self));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/mayfly/replica-a")
    }

    fn fail_with(&self, status: Option<u16>) {
        *self.failing.lock().unwrap() = status;
    }

    fn last(&self) -> Option<AuditAnchorRecord> {
        self.records.lock().unwrap().last().cloned()
    }
}

fn with_http_anchor(url: &str) -> impl Fn(&mut Config) + Send + Sync + 'static {
    let url = AnchorUrl::parse(url).unwrap();
    move |config: &mut Config| {
        config.audit.anchor_http = Some(HttpAnchorConfig {
            url: url.clone(),
            ca_file: None,
            token_file: None,
        });
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// An HTTP witness on a free port, its URL, and a broker anchored to it.
async fn http_witnessed_broker() -> (Arc<Witness>, String, TestBroker) {
    let witness = Arc::new(Witness::default());
    let url = witness.serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let broker = TestBroker::start_configured(with_http_anchor(&url)).await;
    (witness, url, broker)
}

/// A workload's SVID whose every mint is a record of its own (a new `jti` each time).
async fn workload(broker: &TestBroker) -> common::Svid {
    let mut spec = TestBroker::entry_spec("/api", &[AUDIENCE], &[]);
    spec.unique_jti = Some(true);
    let entry = broker.create_entry_from(spec).await.unwrap();
    let token = broker.join_token(&entry.id, 0).await;
    broker.attest(&token).await.unwrap()
}

async fn mint(broker: &TestBroker, svid: &common::Svid) -> pb::MintJwtSvidResponse {
    broker.mint(svid, AUDIENCE, 0).await.unwrap()
}

/// Mints every 100 ms until `done` holds, at most [`PATIENCE`].
async fn mint_until(broker: &TestBroker, svid: &common::Svid, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "not within {PATIENCE:?}");
        mint(broker, svid).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log's head seq.
fn head_seq(data: &Path) -> u64 {
    common::last_audit_record(data)["seq"].as_u64().unwrap()
}

fn recovered(data: &Path) -> Vec<serde_json::Value> {
    common::audit_records(data, "audit.anchor.recovered")
}

/// `mayfly --data-dir <data> <args>`.
fn mayfly(data: &Path, args: &[&str]) -> Output {
    Command::new(MAYFLY)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("MAYFLY_DATA_DIR")
        .env_remove("MAYFLY_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `mayfly status` (text, and `--json`).
fn status(data: &Path) -> (String, serde_json::Value) {
    let plain = mayfly(data, &["status"]);
    assert!(plain.status.success(), "{}", text(&plain));
    let json = mayfly(data, &["status", "--json"]);
    assert!(json.status.success(), "{}", text(&json));
    (
        String::from_utf8(plain.stdout).unwrap(),
        serde_json::from_slice(&json.stdout).unwrap(),
    )
}

/// The sum of the samples of `mayfly_audit_anchor_writes_total` with both labels.
async fn anchor_writes(broker: &TestBroker, sink: &str, outcome: &str) -> f64 {
    let (status, body) = broker.http_get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| l.starts_with("mayfly_audit_anchor_writes_total{"))
        .filter(|l| {
            l.contains(&format!("sink=\"{sink}\"")) && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// The root audit key the broker pinned at its first start.
fn root_key(data: &Path) -> AuditPublicKey {
    AuditPublicKey::from_pem(&std::fs::read(data.join("audit-key/audit-root.pub")).unwrap())
        .unwrap()
}

/// The checkpoint verifies through `keys` from the root key in `audit-root.pub`, with the
/// library's witness check: the chain follows from its first key, which is the pinned root.
fn verifies_through_the_chain(data: &Path, checkpoint: &SignedCheckpoint, keys: &[Handover]) {
    let seen = check_foreign(&checkpoint.replica, checkpoint, keys, None)
        .unwrap_or_else(|problem| panic!("{problem}"));
    assert_eq!(
        seen.keys[0],
        root_key(data).to_base64(),
        "from the pinned root"
    );
    assert_eq!(seen.seq, checkpoint.seq);
}

/// openssl checks the checkpoint's Ed25519 signature over the body rebuilt here from the
/// format docs/operations.md gives, with the key of its epoch from `keys`.
fn openssl_verifies(checkpoint: &SignedCheckpoint, keys: &[Handover]) -> bool {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let handover = keys
        .iter()
        .rev()
        .find(|h| h.epoch == checkpoint.epoch)
        .expect("the key of its epoch");
    let key = AuditPublicKey::from_base64(&handover.public_key).unwrap();
    let body = format!(
        "mayfly audit checkpoint v1\nreplica {}\nsize {}\nroot {}\nhead {}\ntime {}\nepoch {}\n",
        checkpoint.replica,
        checkpoint.seq,
        checkpoint.root,
        checkpoint.hash,
        checkpoint.time,
        checkpoint.epoch
    );
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&checkpoint.signature)
        .unwrap_or_default();
    std::fs::write(dir.path().join("key.pem"), key.to_pem()).unwrap();
    std::fs::write(dir.path().join("body"), body).unwrap();
    std::fs::write(dir.path().join("sig"), signature).unwrap();
    let run = Command::new("openssl")
        .args([
            "pkeyutl", "-verify", "-pubin", "-rawin", "-inkey", "key.pem",
        ])
        .args(["-in", "body", "-sigfile", "sig"])
        .current_dir(dir.path())
        .output()
        .expect("openssl runs (it must be installed)");
    run.status.success()
}

/// `mayfly audit verify --public-key audit-root.pub --checkpoint <checkpoint>` on the
/// broker's (stopped) log: the checkpoint is a prefix of the log, signed by its chain.
fn audit_verify_against(data: &Path, checkpoint: &SignedCheckpoint) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.json");
    std::fs::write(&kept, serde_json::to_vec(checkpoint).unwrap()).unwrap();
    let root = data.join("audit-key/audit-root.pub");
    let output = mayfly(
        data,
        &[
            "audit",
            "verify",
            "--public-key",
            root.to_str().unwrap(),
            "--checkpoint",
            kept.to_str().unwrap(),
        ],
    );
    (output.status.success(), text(&output))
}

/// Copies the directory `from` (recursively) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

/// The witness keeps signed checkpoints that verify; a witness that answers 500 never
/// stops minting, shows in status and the metric, and its recovery is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_witness_keeps_checkpoints_that_verify_and_its_outage_never_blocks_minting() {
    let (witness, url, mut broker) = http_witnessed_broker().await;
    let data = broker.data_dir();
    let svid = workload(&broker).await;
    for _ in 0..3 {
        mint(&broker, &svid).await;
    }
    let head = head_seq(&data);
    mint_until(&broker, &svid, || {
        witness.last().is_some_and(|r| r.checkpoint.seq >= head)
    })
    .await;
    let (plain, json) = status(&data);
    assert!(
        plain.contains(&format!("anchor (http):      {url}: ok\n")),
        "{plain}"
    );
    assert_eq!(json["audit_anchors"][0]["sink"], "http", "{json}");
    assert_eq!(json["audit_anchors"][0]["failures"], 0, "{json}");
    assert_eq!(anchor_writes(&broker, "http", "failed").await, 0.0);
    assert!(anchor_writes(&broker, "http", "ok").await >= 1.0);
    assert!(recovered(&data).is_empty(), "nothing to recover from");

    // What the witness keeps verifies, with the library and with openssl.
    let kept = witness.last().unwrap();
    assert_eq!(kept.replica, broker.server().report().replica_id);
    verifies_through_the_chain(&data, &kept.checkpoint, &kept.keys);
    assert!(openssl_verifies(&kept.checkpoint, &kept.keys));
    // The negative next to it: one digit of the root changed.
    let mut altered = kept.checkpoint.clone();
    altered.root = format!(
        "{}{}",
        if altered.root.starts_with('0') {
            '1'
        } else {
            '0'
        },
        &altered.root[1..]
    );
    assert!(!openssl_verifies(&altered, &kept.keys));
    assert!(check_foreign(&altered.replica, &altered, &kept.keys, None).is_err());

    // The witness answers 500: minting goes on, status and the metric show it.
    witness.fail_with(Some(500));
    let before = witness.records.lock().unwrap().len();
    mint_until(&broker, &svid, || {
        status(&data).1["audit_anchors"][0]["failures"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    })
    .await;
    let (plain, json) = status(&data);
    assert!(
        plain.contains(&format!("anchor (http):      {url}: FAILING since "))
            && plain.contains("(first error: status 500)"),
        "{plain}"
    );
    assert_eq!(json["audit_anchors"][0]["first_error"], "status 500");
    assert!(anchor_writes(&broker, "http", "failed").await >= 2.0);
    assert_eq!(
        witness.records.lock().unwrap().len(),
        before,
        "nothing kept"
    );
    assert!(recovered(&data).is_empty(), "not yet");
    let minted = common::audit_records(&data, "jwt.mint").len();
    assert!(minted >= 5, "{minted} mints recorded");

    // Back: one recovery record naming the sink, however many checkpoints follow.
    witness.fail_with(None);
    mint_until(&broker, &svid, || !recovered(&data).is_empty()).await;
    let head = head_seq(&data);
    mint_until(&broker, &svid, || {
        witness.last().is_some_and(|r| r.checkpoint.seq > head)
    })
    .await;
    let records = recovered(&data);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["actor"], "mayfly-audit");
    assert_eq!(records[0]["detail"]["sink"], "http");
    assert_eq!(records[0]["detail"]["target"], url.as_str());
    assert_eq!(records[0]["reason"], "status 500");
    assert!(records[0]["detail"]["failed_writes"].as_u64().unwrap() >= 2);
    let (plain, _) = status(&data);
    assert!(plain.contains(&format!("{url}: ok")), "{plain}");

    broker.stop().await;
    let kept = witness.last().unwrap();
    let (ok, report) = audit_verify_against(&data, &kept.checkpoint);
    assert!(ok, "{report}");
}

/// The checkpoint the log writes when it closes reaches the witness before the server
/// stops. The control: a burst of mints just after the witness took a checkpoint is not
/// yet covered by what it holds (it takes one a second at most), so the stop is what
/// brings the witness up to the closed log's head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_logs_last_checkpoint_reaches_the_http_witness_at_shutdown() {
    let (witness, _, mut broker) = http_witnessed_broker().await;
    let data = broker.data_dir();
    let svid = workload(&broker).await;
    let head = {
        mint(&broker, &svid).await;
        head_seq(&data)
    };
    mint_until(&broker, &svid, || {
        witness.last().is_some_and(|r| r.checkpoint.seq >= head)
    })
    .await;
    // Just after a send: the next is a second away.
    let taken = witness.records.lock().unwrap().len();
    mint_until(&broker, &svid, || {
        witness.records.lock().unwrap().len() > taken
    })
    .await;
    for _ in 0..3 {
        mint(&broker, &svid).await;
    }
    let head = head_seq(&data);
    let held = witness.last().unwrap().checkpoint.seq;
    assert!(
        held < head,
        "the witness holds {held} before the stop, the log {head}"
    );

    broker.stop().await;
    let closed: SignedCheckpoint =
        serde_json::from_slice(&std::fs::read(data.join("audit/checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(
        closed.seq,
        head_seq(&data),
        "the close checkpoints the head"
    );
    let kept = witness.last().unwrap();
    assert_eq!(
        kept.checkpoint, closed,
        "the witness holds the closed log's checkpoint"
    );
    verifies_through_the_chain(&data, &kept.checkpoint, &kept.keys);
    let (ok, report) = audit_verify_against(&data, &kept.checkpoint);
    assert!(ok, "{report}");
}

/// A witness on a port nobody listens on: the broker starts all the same (the read at
/// start fails with a warning, shown in status), mints, counts failed tries; once the
/// witness listens there, one recovery record names http and the first error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_that_is_away_at_start_never_blocks_the_broker() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("http://{port}/mayfly/replica-a");
    let mut broker = TestBroker::start_configured(with_http_anchor(&url)).await;
    let data = broker.data_dir();
    let svid = workload(&broker).await;
    mint(&broker, &svid).await;
    let (plain, json) = status(&data);
    assert!(plain.contains("FAILING since"), "{plain}");
    let first_error = json["audit_anchors"][0]["first_error"].as_str().unwrap();
    assert!(
        first_error.starts_with("read at start: ") && first_error.contains("refused"),
        "{json}"
    );
    let started = Instant::now();
    loop {
        if anchor_writes(&broker, "http", "failed").await >= 1.0 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "no failed write counted");
        mint(&broker, &svid).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered(&data).is_empty());

    // The witness comes up on that port.
    let witness = Arc::new(Witness::default());
    witness.serve(tokio::net::TcpListener::bind(port).await.unwrap());
    mint_until(&broker, &svid, || !recovered(&data).is_empty()).await;
    let records = recovered(&data);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["detail"]["sink"], "http");
    assert_eq!(records[0]["reason"], first_error, "the first error");
    let kept = witness.last().unwrap();
    verifies_through_the_chain(&data, &kept.checkpoint, &kept.keys);
    broker.stop().await;
}

/// A data directory restored from a copy taken before the witness saw more: refused at
/// start naming the HTTP anchor and the seqs; with no record at the witness (404) the same
/// directory starts (the control); with `--accept-audit-rollback` it starts, and the
/// acceptance names the HTTP anchor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_behind_the_http_witness_is_refused_at_start() {
    let (witness, url, mut broker) = http_witnessed_broker().await;
    let data = broker.data_dir();
    let svid = workload(&broker).await;
    mint(&broker, &svid).await;
    broker.stop().await;
    let backup = broker.dir.path().join("backup");
    copy_dir(&data, &backup);
    let backup_head = head_seq(&data);

    // The second run: the witness sees it through.
    let config = || {
        let mut config = common::test_config(data.clone());
        with_http_anchor(&url)(&mut config);
        config
    };
    let start = |config: Config| {
        mayfly::server::start_with_clock(config, Arc::new(mayfly::clock::SystemClock))
    };
    broker.server = Some(start(config()).await.unwrap());
    for _ in 0..3 {
        mint(&broker, &svid).await;
    }
    let head = head_seq(&data);
    mint_until(&broker, &svid, || {
        witness.last().is_some_and(|r| r.checkpoint.seq >= head)
    })
    .await;
    broker.stop().await;
    let anchored = witness.last().unwrap().checkpoint.seq;
    assert!(anchored > backup_head);

    // The whole data directory (log, checkpoint, key) goes back: only the anchor can tell.
    let restore = || {
        std::fs::remove_dir_all(&data).unwrap();
        copy_dir(&backup, &data);
    };
    restore();
    let refused = start(config())
        .await
        .expect_err("a rolled-back log is refused")
        .to_string();
    for needle in [
        format!("http anchor {url}"),
        format!("seq {anchored}"),
        "truncated".to_owned(),
        "--accept-audit-rollback".to_owned(),
    ] {
        assert!(refused.contains(&needle), "{needle}: {refused}");
    }

    // The control: a witness that holds nothing yet does not stop the same directory.
    let kept = std::mem::take(&mut *witness.records.lock().unwrap());
    start(config()).await.unwrap().shutdown().await;
    *witness.records.lock().unwrap() = kept;
    restore();

    let mut accepting = config();
    accepting.audit.accept_divergence = Some("restored from backup, INC-7".into());
    start(accepting).await.unwrap().shutdown().await;
    let accepted = common::audit_records(&data, "audit.divergence.accepted");
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0]["seq"], backup_head + 1);
    assert!(
        accepted[0]["detail"]["found"]
            .to_string()
            .contains(&format!("http anchor {url}")),
        "{}",
        accepted[0]
    );
}

// ---------------------------------------------------------------------------------------
// syslog

/// `rsyslogd`, or `None` with the reason printed (a failure under `CI=true`).
fn rsyslogd_or_skip() -> Option<PathBuf> {
    let found = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .or_else(|| {
            let which = Command::new("which").arg("rsyslogd").output().ok()?;
            which
                .status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&which.stdout).trim()))
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "rsyslogd is needed under CI (Debian package rsyslog; .ci/run installs it)"
        );
        eprintln!("skipped: no rsyslogd (install the Debian package rsyslog to run this test)");
    }
    found
}

/// rsyslogd in the foreground, unprivileged: its own config, a Unix socket and an output
/// file in a temporary directory. Killed when dropped.
struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
}

impl Rsyslog {
    fn start(binary: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        // imuxsock without its special parser hands the message to the RFC 5424 parser;
        // the template keeps what that parser found, then the MSG as it was.
        let conf = format!(
            "global(workDirectory=\"{work}\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{socket}\" UseSpecialParser=\"off\" ParseHostname=\"on\")\n\
             template(name=\"fields\" type=\"string\" string=\"%syslogfacility-text% %syslogseverity-text% %app-name% %procid% %msgid% %msg%\\n\")\n\
             action(type=\"omfile\" file=\"{out}\" template=\"fields\")\n",
            work = dir.path().display(),
            socket = at("log.sock"),
            out = at("messages"),
        );
        std::fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
        let child = Command::new(binary)
            .arg("-n")
            .arg("-f")
            .arg(dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rsyslog = Rsyslog { child, dir };
        let started = Instant::now();
        while !rsyslog.socket().exists() {
            assert!(started.elapsed() < PATIENCE, "rsyslogd made no socket");
            std::thread::sleep(Duration::from_millis(50));
        }
        rsyslog
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("log.sock")
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("messages"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each new checkpoint reaches rsyslogd as an RFC 5424 message (authpriv.notice, APP-NAME
/// mayfly, MSGID audit-checkpoint) whose MSG is a checkpoint that verifies through the key
/// chain and with openssl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslogd_receives_each_checkpoint_as_an_rfc_5424_message_that_verifies() {
    let Some(binary) = rsyslogd_or_skip() else {
        return;
    };
    let rsyslog = Rsyslog::start(&binary);
    let target = SyslogTarget::Unix(rsyslog.socket());
    let spec = target.to_string();
    let mut broker = TestBroker::start_configured(move |config| {
        config.audit.anchor_syslog = Some(target.clone());
    })
    .await;
    let data = broker.data_dir();
    let svid = workload(&broker).await;
    for _ in 0..3 {
        mint(&broker, &svid).await;
    }
    let head = head_seq(&data);
    let pid = std::process::id().to_string();
    let received = || -> Vec<SignedCheckpoint> {
        rsyslog
            .lines()
            .iter()
            .filter_map(|line| {
                let fields: Vec<&str> = line.splitn(6, ' ').collect();
                assert_eq!(
                    fields[..5],
                    [
                        "authpriv",
                        "notice",
                        "mayfly",
                        pid.as_str(),
                        "audit-checkpoint"
                    ],
                    "{line}"
                );
                serde_json::from_str(fields[5]).ok()
            })
            .collect()
    };
    mint_until(&broker, &svid, || {
        received().iter().any(|checkpoint| checkpoint.seq >= head)
    })
    .await;
    let (plain, _) = status(&data);
    assert!(
        plain.contains(&format!("anchor (syslog):    {spec}: ok\n")),
        "{plain}"
    );
    assert!(anchor_writes(&broker, "syslog", "ok").await >= 1.0);
    assert_eq!(anchor_writes(&broker, "syslog", "failed").await, 0.0);

    let keys: Vec<Handover> = std::fs::read_to_string(data.join("audit/keys.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let checkpoints = received();
    let newest = checkpoints.iter().max_by_key(|c| c.seq).unwrap();
    verifies_through_the_chain(&data, newest, &keys);
    assert!(openssl_verifies(newest, &keys));
    for checkpoint in &checkpoints {
        assert_eq!(checkpoint.replica, broker.server().report().replica_id);
    }

    // The daemon gone: minting goes on, the tries fail, status and the metric say so.
    drop(rsyslog);
    let started = Instant::now();
    while anchor_writes(&broker, "syslog", "failed").await < 1.0 {
        assert!(
            started.elapsed() < PATIENCE,
            "no failed syslog send counted"
        );
        mint(&broker, &svid).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (plain, json) = status(&data);
    assert!(
        plain.contains(&format!("anchor (syslog):    {spec}: FAILING since ")),
        "{plain}"
    );
    assert!(
        json["audit_anchors"][0]["first_error"]
            .as_str()
            .unwrap()
            .contains(&spec),
        "{json}"
    );
    broker.stop().await;
}
