//! Redis as a witness of every replica's audit checkpoints (issue 15, anchors outside the
//! host): replicas on one Redis publish their signed checkpoints and check each other's;
//! an older or altered record is raised once; a replica whose audit directory was rolled
//! back is refused at start, naming the Redis witness, unless an operator accepts it.
//!
//! Redis is real: `MAYFLY_TEST_REDIS` (default `redis://127.0.0.1:6379`), each test under a
//! key prefix of its own. Without it the tests are skipped, or fail under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::{PrefixGuard, redis_url_or_skip};
use mayfly::clock::SystemClock;
use mayfly::config::{Config, StoreLocation};
use mayfly::server::RunningServer;
use mayfly::store::{AuditAnchorRecord, RedisStore, Store};
use redis::AsyncCommands as _;

/// One broker on the test Redis.
struct Replica {
    server: RunningServer,
    data: PathBuf,
}

fn config(data: &Path, url: &str, prefix: &str) -> Config {
    Config {
        store: StoreLocation::Redis {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        },
        ..common::test_config(data.to_owned())
    }
}

impl Replica {
    async fn start(data: PathBuf, url: &str, prefix: &str, root_from: Option<&Replica>) -> Self {
        if let Some(first) = root_from {
            // Replicas share one root: the operator copies it.
            mayfly_sdk::files::ensure_private_dir(&data).unwrap();
            mayfly_ca::export_active_root(&first.data.join("ca"), &data.join("ca")).unwrap();
        }
        let server =
            mayfly::server::start_with_clock(config(&data, url, prefix), Arc::new(SystemClock))
                .await
                .unwrap();
        Replica { server, data }
    }

    fn id(&self) -> String {
        self.server.report().replica_id.clone()
    }

    /// Appends audit records: an entry created through the admin API.
    async fn audit_something(&self, path: &str) {
        let mut admin = mayfly_sdk::client::connect_admin(self.server.admin_socket())
            .await
            .unwrap();
        admin
            .create_entry(mayfly_sdk::proto::v1::CreateEntryRequest {
                spec: Some(common::TestBroker::entry_spec(path, &["db"], &[])),
            })
            .await
            .unwrap();
    }

    /// The seq this replica's witness last accepted of `other`'s log.
    fn seen_of(&self, other: &str) -> Option<u64> {
        let view = self.server.audit_witness().expect("a witness on Redis");
        view.seen().get(other).map(|seen| seen.seq)
    }

    /// Its audit records of `action`.
    fn records(&self, action: &str) -> Vec<serde_json::Value> {
        common::audit_records(&self.data, action)
    }

    async fn metric(&self, series: &str) -> Option<f64> {
        let (status, body) = common::http_get(self.server.http_addr(), "/metrics").await;
        assert_eq!(status, 200);
        body.lines()
            .filter_map(|line| line.strip_prefix(series))
            .filter_map(|rest| rest.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
            .next()
    }
}

/// Polls `condition` every 100 ms for at most `limit`.
async fn within(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    condition()
}

/// The raw JSON of `replica`'s record in `{prefix}:audit`.
async fn raw_record(keys: &PrefixGuard, replica: &str) -> Option<String> {
    let mut redis = keys.connection().await;
    redis.hget(keys.key("audit"), replica).await.unwrap()
}

async fn published_seq(keys: &PrefixGuard, replica: &str) -> Option<u64> {
    let json = raw_record(keys, replica).await?;
    let record: AuditAnchorRecord = serde_json::from_str(&json).unwrap();
    Some(record.checkpoint.seq)
}

/// Waits (at most 15 s) until `replica`'s published checkpoint covers at least `seq`.
async fn published_at_least(keys: &PrefixGuard, replica: &str, seq: u64) -> u64 {
    let start = Instant::now();
    loop {
        if let Some(published) = published_seq(keys, replica).await
            && published >= seq
        {
            return published;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{replica} did not publish seq {seq}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn head_seq(data: &Path) -> u64 {
    let log = std::fs::read_to_string(data.join("audit/audit.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    last["seq"].as_u64().unwrap()
}

/// openssl checks a published checkpoint's Ed25519 signature, over the body rebuilt here
/// from the format the docs give, with the key of its epoch from the published hand-overs.
fn openssl_verifies(record: &AuditAnchorRecord) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = &record.checkpoint;
    let handover = record
        .keys
        .iter()
        .rev()
        .find(|h| h.epoch == checkpoint.epoch)
        .expect("the key of its epoch");
    let key = mayfly::audit::AuditPublicKey::from_base64(&handover.public_key).unwrap();
    let body = format!(
        "mayfly audit checkpoint v1\nreplica {}\nsize {}\nroot {}\nhead {}\ntime {}\nepoch {}\n",
        checkpoint.replica,
        checkpoint.seq,
        checkpoint.root,
        checkpoint.hash,
        checkpoint.time,
        checkpoint.epoch
    );
    use base64::Engine as _;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&checkpoint.signature)
        .unwrap_or_default();
    std::fs::write(dir.path().join("key.pem"), key.to_pem()).unwrap();
    std::fs::write(dir.path().join("body"), body).unwrap();
    std::fs::write(dir.path().join("sig"), signature).unwrap();
    let run = std::process::Command::new("openssl")
        .args([
            "pkeyutl", "-verify", "-pubin", "-rawin", "-inkey", "key.pem",
        ])
        .args(["-in", "body", "-sigfile", "sig"])
        .current_dir(dir.path())
        .output()
        .expect("openssl runs (it must be installed)");
    run.status.success()
}

const REGRESSED: &str = r#"mayfly_audit_witness_findings_total{kind="regressed"}"#;
const BAD_SIGNATURE: &str = r#"mayfly_audit_witness_findings_total{kind="bad_signature"}"#;
const PUBLISHED: &str = r#"mayfly_audit_witness_publishes_total{outcome="ok"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_witness_each_other_and_an_older_or_altered_checkpoint_is_raised_once() {
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let keys = PrefixGuard::new(&url, "audit_witness");
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::start(dir.path().join("a"), &url, &keys.prefix, None).await;
    let b = Replica::start(dir.path().join("b"), &url, &keys.prefix, Some(&a)).await;
    let (id_a, id_b) = (a.id(), b.id());

    // Each publishes, and each sees the other.
    a.audit_something("/first").await;
    let first_a = published_at_least(&keys, &id_a, head_seq(&a.data)).await;
    published_at_least(&keys, &id_b, 1).await;
    let old_record_of_a = raw_record(&keys, &id_a).await.unwrap();
    assert!(
        within(Duration::from_secs(10), || b.seen_of(&id_a)
            >= Some(first_a))
        .await,
        "b never saw a's seq {first_a}: {:?}",
        b.seen_of(&id_a)
    );
    let seen_b = b.seen_of(&id_a).unwrap();
    assert!(
        within(Duration::from_secs(10), || a.seen_of(&id_b).is_some()).await,
        "a never saw b"
    );
    let seen_a = a.seen_of(&id_b).unwrap();

    // Each sees the other's head move forward.
    a.audit_something("/second").await;
    b.audit_something("/third").await;
    assert!(
        within(Duration::from_secs(10), || b.seen_of(&id_a) > Some(seen_b)).await,
        "b's view of a stayed at {seen_b}"
    );
    assert!(
        within(Duration::from_secs(10), || a.seen_of(&id_b) > Some(seen_a)).await,
        "a's view of b stayed at {seen_a}"
    );
    // What Redis holds checks out with openssl alone; an altered signature does not (the
    // control for the check).
    let current: AuditAnchorRecord =
        serde_json::from_str(&raw_record(&keys, &id_a).await.unwrap()).unwrap();
    assert!(openssl_verifies(&current));
    let mut altered = current.clone();
    let first = altered.checkpoint.signature.remove(0);
    altered
        .checkpoint
        .signature
        .insert(0, if first == 'A' { 'B' } else { 'A' });
    assert!(!openssl_verifies(&altered));

    // No finding between honest replicas; the findings are exported at zero.
    for replica in [&a, &b] {
        assert!(replica.records("audit.witness.alarm").is_empty());
        assert_eq!(replica.metric(REGRESSED).await, Some(0.0));
        assert!(replica.metric(PUBLISHED).await.unwrap() >= 1.0);
    }

    // An insider with Redis access puts back an older checkpoint of a (a is stopped, so it
    // does not publish over it): b raises `regressed`, once.
    a.server.shutdown().await;
    let mut redis = keys.connection().await;
    let _: () = redis
        .hset(keys.key("audit"), &id_a, &old_record_of_a)
        .await
        .unwrap();
    assert!(
        within(Duration::from_secs(10), || !b
            .records("audit.witness.alarm")
            .is_empty())
        .await,
        "b raised nothing"
    );
    tokio::time::sleep(Duration::from_secs(5)).await; // two more checks at least
    let alarms = b.records("audit.witness.alarm");
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0]["actor"], "mayfly-audit");
    assert_eq!(alarms[0]["detail"]["replica"], id_a.as_str());
    assert_eq!(alarms[0]["detail"]["kind"], "regressed");
    let before = alarms[0]["detail"]["before"].as_str().unwrap();
    let before_seq: u64 = before
        .strip_prefix("seq ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|seq| seq.parse().ok())
        .unwrap_or_else(|| panic!("{before}"));
    assert!(before_seq > first_a, "{before}");
    assert!(
        alarms[0]["detail"]["now"]
            .as_str()
            .unwrap()
            .contains(&format!("seq {first_a} "))
    );
    assert_eq!(b.metric(REGRESSED).await, Some(1.0));
    assert_eq!(b.metric(BAD_SIGNATURE).await, Some(0.0));

    // Then a's latest record with its checkpoint's signature altered: `bad_signature`.
    let altered = serde_json::to_string(&altered).unwrap();
    let _: () = redis
        .hset(keys.key("audit"), &id_a, &altered)
        .await
        .unwrap();
    assert!(
        within(Duration::from_secs(10), || b
            .records("audit.witness.alarm")
            .len()
            == 2)
        .await,
        "b did not raise the altered signature"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let alarms = b.records("audit.witness.alarm");
    assert_eq!(alarms.len(), 2, "{alarms:?}");
    assert_eq!(alarms[1]["detail"]["kind"], "bad_signature");
    assert_eq!(b.metric(BAD_SIGNATURE).await, Some(1.0));
    assert_eq!(b.metric(REGRESSED).await, Some(1.0));
    b.server.shutdown().await;
}

/// Copies a directory tree (files keep their modes; directories are made 0700).
fn copy_tree(from: &Path, to: &Path) {
    mayfly_sdk::files::ensure_private_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn restore(backup: &Path, data: &Path) {
    for name in ["audit", "audit-key"] {
        std::fs::remove_dir_all(data.join(name)).unwrap();
        copy_tree(&backup.join(name), &data.join(name));
    }
}

/// A stopping replica publishes the checkpoint its log wrote at the close. The control:
/// two records appended back to back are not yet covered by what Redis holds (the second
/// waits for the next checkpoint, a second later, and the witness publishes every 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_replica_publishes_its_closed_logs_last_checkpoint() {
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let keys = PrefixGuard::new(&url, "audit_last");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let a = Replica::start(data.clone(), &url, &keys.prefix, None).await;
    let id = a.id();
    a.audit_something("/first").await;
    published_at_least(&keys, &id, head_seq(&data)).await;
    a.audit_something("/second").await;
    a.audit_something("/third").await;
    let head = head_seq(&data);
    let held = published_seq(&keys, &id).await.unwrap();
    assert!(
        held < head,
        "Redis holds {held} before the stop, the log {head}"
    );

    a.server.shutdown().await;
    assert_eq!(published_seq(&keys, &id).await, Some(head_seq(&data)));
    let record: AuditAnchorRecord =
        serde_json::from_str(&raw_record(&keys, &id).await.unwrap()).unwrap();
    let closed = std::fs::read(data.join("audit/checkpoint.json")).unwrap();
    assert_eq!(
        record.checkpoint,
        serde_json::from_slice(&closed).unwrap(),
        "Redis holds the closed log's checkpoint"
    );
    assert!(openssl_verifies(&record));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_audit_directory_is_refused_at_start_naming_the_redis_witness() {
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let keys = PrefixGuard::new(&url, "audit_rollback");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let backup = dir.path().join("backup");
    let a = Replica::start(data.clone(), &url, &keys.prefix, None).await;
    let id = a.id();
    a.audit_something("/before-backup").await;
    published_at_least(&keys, &id, head_seq(&data)).await;
    a.server.shutdown().await;
    // The insider's backup: the log and its key, both.
    for name in ["audit", "audit-key"] {
        copy_tree(&data.join(name), &backup.join(name));
    }
    let backed_up = head_seq(&data);

    // Positive control: an honest restart starts, and its log moves on past the backup.
    let a = Replica::start(data.clone(), &url, &keys.prefix, None).await;
    a.audit_something("/after-backup").await;
    let witnessed = published_at_least(&keys, &id, head_seq(&data)).await;
    assert!(witnessed > backed_up);
    a.server.shutdown().await;

    // The backup put back: the log and key agree with each other, only Redis knows better.
    restore(&backup, &data);
    let refused =
        mayfly::server::start_with_clock(config(&data, &url, &keys.prefix), Arc::new(SystemClock))
            .await
            .expect_err("a rolled-back audit log must be refused");
    let message = refused.to_string();
    let witness = format!("redis {}:audit", keys.prefix);
    assert!(message.contains(&witness), "{message}");
    assert!(message.contains(&format!("seq {witnessed}")), "{message}");
    assert!(message.contains("--accept-audit-rollback"), "{message}");
    // The refusal is from the witness alone: the restored key matches the restored log.
    assert_eq!(message.matches("the audit key in").count(), 0, "{message}");

    // Accepted with a reason, it starts; the acceptance is its first new record, naming
    // what Redis witnessed.
    let mut accepted = config(&data, &url, &keys.prefix);
    accepted.audit.accept_divergence = Some("restored from the backup on purpose".into());
    let server = mayfly::server::start_with_clock(accepted, Arc::new(SystemClock))
        .await
        .unwrap();
    let records = common::audit_records(&data, "audit.divergence.accepted");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["seq"].as_u64(), Some(backed_up + 1));
    assert!(records[0]["detail"]["found"].to_string().contains(&witness));
    server.shutdown().await;
}

#[tokio::test]
async fn the_redis_store_keeps_one_audit_checkpoint_per_replica_and_refuses_a_misfiled_one() {
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let keys = PrefixGuard::new(&url, "audit_store");
    let store = RedisStore::connect(&url, &keys.prefix).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = mayfly::audit::AuditLog::open(dir.path()).unwrap();
    let checkpoint = log.checkpoints().borrow().clone().unwrap();
    let record = AuditAnchorRecord {
        replica: "local".into(),
        checkpoint: checkpoint.clone(),
        keys: log.handovers().unwrap(),
        published_at: 7,
    };
    assert!(store.audit_checkpoints().await.unwrap().is_empty());
    assert_eq!(store.audit_checkpoint("local").await.unwrap(), None);
    store
        .publish_audit_checkpoint("local", &record)
        .await
        .unwrap();
    let newer = AuditAnchorRecord {
        published_at: 8,
        ..record.clone()
    };
    store
        .publish_audit_checkpoint("local", &newer)
        .await
        .unwrap();
    assert_eq!(
        store.audit_checkpoints().await.unwrap(),
        vec![newer.clone()]
    );
    assert_eq!(store.audit_checkpoint("local").await.unwrap(), Some(newer));
    // Published under another replica's name: refused.
    assert!(
        store
            .publish_audit_checkpoint("other", &record)
            .await
            .is_err()
    );
    // A record filed under another replica in Redis, or not a record: corrupt, named.
    let mut redis = keys.connection().await;
    let json = serde_json::to_string(&record).unwrap();
    let _: () = redis.hset(keys.key("audit"), "other", &json).await.unwrap();
    let misfiled = store.audit_checkpoint("other").await.unwrap_err();
    assert!(misfiled.to_string().contains("other"), "{misfiled}");
    let _: () = redis.hset(keys.key("audit"), "other", "{}").await.unwrap();
    assert!(store.audit_checkpoints().await.is_err());
    // The embedded store has no witness.
    let embedded = mayfly::store::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    embedded
        .publish_audit_checkpoint("local", &record)
        .await
        .unwrap();
    assert!(embedded.audit_checkpoints().await.unwrap().is_empty());
    log.close().await.unwrap();
}
