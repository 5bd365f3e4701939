//! The owners' digest (issue 16, "Owners are told") against a real broker on a clock the
//! test controls, a real HTTP receiver (axum) standing for the owners' alerting, and the
//! `mayfly` binary:
//!
//! - `mayfly report owners` lists, per owner, identities expiring soon and dormant ones;
//!   an owner with nothing to do is left out.
//! - A digest round sends each such owner one signed JSON POST; the signature verifies with
//!   the shared secret in Rust and in Python's `hmac` (an independent implementation), and
//!   not over a changed body. A 503 is tried again with the same delivery id; a 400 is
//!   final. Each fate is an audit record (`governance.digest`, `alert.delivered`,
//!   `alert.undelivered`), and a round is sent once.
//! - Two replicas on the real Redis (MAYFLY_TEST_REDIS; skipped without one, except under
//!   CI=true, where that fails) send each round exactly once between them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestBroker;
use common::webhook::{Delivery, Receiver, SECRET, secret_file};
use mayfly::alert::WebhookConfig;
use mayfly::alert::webhook::{SignatureError, verify_signature};
use mayfly::governance::DigestOutcome;
use mayfly::outbound::HttpUrl;
use mayfly_sdk::proto::v1 as pb;

const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");
const DAY: u64 = 86_400;
/// How long a test waits for something the broker does in the background.
const PATIENCE: Duration = Duration::from_secs(30);

/// A broker on the test's clock whose digest goes to `url`; dormancy after 30 days; the
/// sweeper's own rounds a day apart, so that only the test starts them.
async fn broker_with_webhook(url: &str, secret: PathBuf) -> TestBroker {
    let url = HttpUrl::parse(url).unwrap();
    TestBroker::start_on_manual_clock(move |config| {
        config.governance.sweep_every = Duration::from_secs(DAY);
        config.governance.dormant_after = Some(Duration::from_secs(30 * DAY));
        config.alerts.webhook = Some(WebhookConfig {
            url: url.clone(),
            secret_file: secret.clone(),
            ca_file: None,
        });
    })
    .await
}

/// An entry of `owner` at `path` expiring in `days`.
async fn entry(broker: &TestBroker, path: &str, owner: &str, days: u64) -> pb::Entry {
    let mut spec = TestBroker::entry_spec(path, &["orders"], &[]);
    spec.owner = Some(owner.into());
    spec.expires_at = Some(broker.clock_dyn().unix_now() + (days * DAY) as i64);
    broker.create_entry_from(spec).await.unwrap()
}

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

/// Python's `hmac` and `hashlib` recompute the signature header over `body`.
fn python_signature(timestamp: &str, body: &[u8], dir: &Path) -> String {
    let path = dir.join("body.json");
    std::fs::write(&path, body).unwrap();
    let script = "import hmac, hashlib, sys\n\
                  t, key, path = sys.argv[1], sys.argv[2].encode(), sys.argv[3]\n\
                  body = open(path, 'rb').read()\n\
                  mac = hmac.new(key, t.encode() + b'.' + body, hashlib.sha256).hexdigest()\n\
                  print(f't={t},v1={mac}')\n";
    let output = Command::new("python3")
        .args(["-c", script, timestamp, SECRET])
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_owner_gets_a_signed_digest_of_what_needs_them_and_a_503_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, url) = Receiver::start(&[503]).await;
    let mut broker = broker_with_webhook(&url, secret_file(dir.path())).await;
    let expiring = entry(&broker, "/billing/api", "team-billing", 40).await;
    let idle = entry(&broker, "/billing/batch", "team-billing", 365).await;
    let reports = entry(&broker, "/reports/api", "team-reports", 365).await;
    // The billing API and the reports API are issued an X509-SVID on day 29 (JWT-SVIDs
    // would need mTLS, which checks certificates on the real clock); the batch job never
    // minted anything.
    broker.clock.advance(Duration::from_secs(29 * DAY));
    for used in [&expiring, &reports] {
        broker
            .attest(&broker.join_token(&used.id, 0).await)
            .await
            .unwrap();
    }
    broker.clock.advance(Duration::from_secs(2 * DAY));

    // What `mayfly report owners` shows: billing's expiring API and idle batch job; the
    // reports team has nothing to do and is left out.
    let data = broker.data_dir();
    let shown = mayfly(&data, &["report", "owners", "--json"]);
    assert!(shown.status.success(), "{shown:?}");
    let digests: Vec<serde_json::Value> = String::from_utf8(shown.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(digests.len(), 1, "{digests:#?}");
    let billing = &digests[0];
    assert_eq!(billing["owner"], "team-billing");
    assert_eq!(
        billing["expiring"]["items"][0]["entry_id"],
        expiring.id.as_str()
    );
    assert_eq!(billing["dormant"]["items"][0]["entry_id"], idle.id.as_str());
    assert_eq!(billing["review_overdue"]["items"], serde_json::json!([]));
    let text = mayfly(&data, &["report", "owners", "--owner", "team-billing"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("expiring within 14 days (1)"), "{text}");
    assert!(
        text.contains(&format!("mayfly entry update {}", expiring.id)),
        "{text}"
    );
    let none = mayfly(&data, &["report", "owners", "--owner", "team-reports"]);
    assert!(none.status.success());
    assert!(none.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("nothing to look at"),
        "{none:?}"
    );

    // A round: one digest, to billing only; the same round is not sent twice.
    let outcome = broker.server().send_owner_digests().await.unwrap();
    let DigestOutcome::Sent { round, owners } = outcome else {
        panic!("a lone broker sends its round: {outcome:?}");
    };
    assert_eq!(owners, ["team-billing"]);
    assert_eq!(
        broker.server().send_owner_digests().await.unwrap(),
        DigestOutcome::Skipped { round }
    );

    // The receiver answered 503 first; the broker tried again and it took it.
    common::wait_for("a second try", || receiver.got().len() >= 2).await;
    common::wait_for("the delivery record", || {
        !broker.audit_records("alert.delivered").is_empty()
    })
    .await;
    let got = receiver.got();
    assert_eq!(got.len(), 2, "delivered once, after one retry");
    assert_eq!((got[0].answered, got[1].answered), (503, 204));
    let header = |d: &Delivery, name: &str| d.headers[name].to_str().unwrap().to_owned();
    assert_eq!(header(&got[0], "mayfly-event"), "owner-digest");
    assert_eq!(
        header(&got[0], "mayfly-delivery"),
        header(&got[1], "mayfly-delivery"),
        "the same delivery id on every try"
    );
    assert_eq!(header(&got[1], "content-type"), "application/json");

    // The body is the digest, for billing; its signature holds.
    let delivered = &got[1];
    let body: serde_json::Value = serde_json::from_slice(&delivered.body).unwrap();
    assert_eq!(body["kind"], "owner-digest");
    assert_eq!(body["subject"], "team-billing");
    assert_eq!(
        body["body"]["expiring"]["items"][0]["entry_id"],
        expiring.id.as_str()
    );
    assert_eq!(
        body["body"]["dormant"]["items"][0]["entry_id"],
        idle.id.as_str()
    );
    let signature = header(delivered, "mayfly-signature");
    let now = broker.clock_dyn().unix_now();
    verify_signature(
        SECRET.as_bytes(),
        &signature,
        &delivered.body,
        now,
        Duration::from_secs(300),
    )
    .unwrap();
    let timestamp = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .unwrap();
    assert_eq!(
        python_signature(timestamp, &delivered.body, dir.path()),
        signature,
        "Python's hmac computes the same signature"
    );
    // Negative controls: a changed body, another secret.
    let mut changed = delivered.body.to_vec();
    let at = changed.iter().position(|b| *b == b'b').unwrap();
    changed[at] = b'B';
    assert_eq!(
        verify_signature(
            SECRET.as_bytes(),
            &signature,
            &changed,
            now,
            Duration::from_secs(300)
        ),
        Err(SignatureError::Mismatch)
    );
    assert_ne!(python_signature(timestamp, &changed, dir.path()), signature);

    // The evidence: the digest queued, and delivered after two tries.
    let digest = broker.audit_records("governance.digest");
    assert_eq!(digest.len(), 1, "{digest:#?}");
    assert_eq!(digest[0]["detail"]["owner"], "team-billing");
    assert_eq!(digest[0]["detail"]["counts"]["expiring"], 1);
    assert_eq!(digest[0]["detail"]["counts"]["dormant"], 1);
    let delivery = &broker.audit_records("alert.delivered")[0];
    assert_eq!(delivery["detail"]["tries"], 2);
    assert_eq!(
        delivery["detail"]["delivery"],
        header(delivered, "mayfly-delivery")
    );
    assert!(broker.audit_records("alert.undelivered").is_empty());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_refusal_is_not_tried_again_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, url) = Receiver::start(&[400]).await;
    let mut broker = broker_with_webhook(&url, secret_file(dir.path())).await;
    entry(&broker, "/billing/api", "team-billing", 10).await;
    let outcome = broker.server().send_owner_digests().await.unwrap();
    assert!(matches!(outcome, DigestOutcome::Sent { .. }), "{outcome:?}");
    common::wait_for("the undelivered record", || {
        !broker.audit_records("alert.undelivered").is_empty()
    })
    .await;
    let undelivered = &broker.audit_records("alert.undelivered")[0];
    assert_eq!(undelivered["reason"], "status 400");
    assert_eq!(undelivered["detail"]["tries"], 1);
    assert_eq!(receiver.got().len(), 1, "a 400 is final");
    assert!(broker.audit_records("alert.delivered").is_empty());

    // Positive control: the next round (a day later) is delivered at the first try.
    broker.clock.advance(Duration::from_secs(DAY));
    let outcome = broker.server().send_owner_digests().await.unwrap();
    assert!(matches!(outcome, DigestOutcome::Sent { .. }), "{outcome:?}");
    common::wait_for("the delivered record", || {
        !broker.audit_records("alert.delivered").is_empty()
    })
    .await;
    assert_eq!(receiver.got().len(), 2);
    broker.stop().await;
}

/// A replica on the real Redis (MAYFLY_TEST_REDIS) sending its digest to `webhook`.
async fn replica(
    dir: &Path,
    name: &str,
    redis: &str,
    prefix: &str,
    clock: Arc<mayfly::clock::ManualClock>,
    webhook: &WebhookConfig,
    root_from: Option<&Path>,
) -> mayfly::server::RunningServer {
    common::replica_on_clock(dir, name, redis, prefix, clock, root_from, |config| {
        config.governance.sweep_every = Duration::from_secs(DAY);
        config.alerts.webhook = Some(webhook.clone());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_send_each_round_once() {
    let Some(redis) = common::redis::redis_url_or_skip() else {
        return;
    };
    let guard = common::redis::PrefixGuard::new(&redis, "digest");
    let dir = tempfile::tempdir().unwrap();
    let (receiver, url) = Receiver::start(&[]).await;
    let webhook = WebhookConfig {
        url: HttpUrl::parse(&url).unwrap(),
        secret_file: secret_file(dir.path()),
        ca_file: None,
    };
    let clock = Arc::new(mayfly::clock::ManualClock::new(std::time::SystemTime::now()));
    let now = || mayfly::clock::unix_seconds(mayfly::clock::Clock::now(clock.as_ref()));
    let a = replica(
        dir.path(),
        "a",
        &redis,
        &guard.prefix,
        clock.clone(),
        &webhook,
        None,
    )
    .await;
    let a_data = dir.path().join("a");
    let b = replica(
        dir.path(),
        "b",
        &redis,
        &guard.prefix,
        clock.clone(),
        &webhook,
        Some(&a_data),
    )
    .await;
    let mut spec = TestBroker::entry_spec("/shared", &["orders"], &[]);
    spec.expires_at = Some(now() + (10 * DAY) as i64);
    let entry = mayfly_sdk::client::connect_admin(a.admin_socket())
        .await
        .unwrap()
        .create_entry(pb::CreateEntryRequest { spec: Some(spec) })
        .await
        .unwrap()
        .into_inner();
    // Replica b learns of it through the change feed.
    let mut b_admin = mayfly_sdk::client::connect_admin(b.admin_socket())
        .await
        .unwrap();
    let started = Instant::now();
    while b_admin
        .get_entry(pb::GetEntryRequest {
            id: entry.id.clone(),
        })
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < PATIENCE,
            "replica b never heard of the entry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for round in 0..2 {
        let (on_a, on_b) = tokio::join!(a.send_owner_digests(), b.send_owner_digests());
        let outcomes = [on_a.unwrap(), on_b.unwrap()];
        let sent = outcomes
            .iter()
            .filter(|o| matches!(o, DigestOutcome::Sent { .. }))
            .count();
        assert_eq!(
            sent, 1,
            "exactly one replica sends round {round}: {outcomes:?}"
        );
        common::wait_for("the delivery", || receiver.got().len() > round).await;
        clock.advance(Duration::from_secs(DAY));
    }
    assert_eq!(receiver.got().len(), 2, "one digest a round");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_test_says_whether_the_webhook_took_it() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, url) = Receiver::start(&[401]).await;
    let mut broker = broker_with_webhook(&url, secret_file(dir.path())).await;
    let data = broker.data_dir();
    let run = |args: &[&str]| {
        let output = mayfly(&data, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    // A 401 is final: not delivered, exit status 1, the reason shown.
    let (ok, text) = run(&["alerts", "test"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("NOT delivered") && text.contains("status 401"),
        "{text}"
    );
    // Positive control: the receiver takes the next one.
    let (ok, text) = run(&["alerts", "test", "--note", "new receiver, CHG-1"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("delivered to") && text.contains("after 1 try"),
        "{text}"
    );
    let got = receiver.got();
    assert_eq!(got.len(), 2);
    let body: serde_json::Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(body["kind"], "test");
    assert_eq!(body["body"]["note"], "new receiver, CHG-1");
    assert!(
        body["subject"].as_str().unwrap().starts_with("admin"),
        "{body}"
    );
    verify_signature(
        SECRET.as_bytes(),
        got[1].headers["mayfly-signature"].to_str().unwrap(),
        &got[1].body,
        broker.clock_dyn().unix_now(),
        Duration::from_secs(300),
    )
    .unwrap();
    assert_eq!(broker.audit_records("alert.undelivered").len(), 1);
    assert_eq!(broker.audit_records("alert.delivered").len(), 1);
    // A note with a control character is the caller's mistake, and changes nothing.
    let (ok, text) = run(&["alerts", "test", "--note", "two\nlines"]);
    assert!(!ok && text.contains("control characters"), "{text}");
    assert_eq!(receiver.got().len(), 2);
    broker.stop().await;

    // Without a webhook, the command says what to configure.
    let mut plain = TestBroker::start().await;
    let output = mayfly(&plain.data_dir(), &["alerts", "test"]);
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(text.contains("[alerts] webhook_url"), "{text}");
    plain.stop().await;
}
