//! Anomaly detection on the mint path (issue 17) against a real broker on a clock the test
//! controls, a real agent and the SDK's verifier, and a real HTTP receiver (axum) for the
//! alert webhook:
//!
//! - A burst of mints on an entry under a `quarantine` rule disables it and revokes what it
//!   issued: the broker, an agent and the SDK verifier reject the token it held. The same
//!   burst under an `alert` rule only alerts; an entry below the floor trips nothing. After
//!   `EnableEntry`, the entry mints again and its new tokens validate.
//! - Refusal probing (N refusals) raises a signed alert; N - 1 refusals raise none.
//! - A new source for an entry whose sources were stable is a finding; before stability it
//!   is not.
//! - Minting goes on while the webhook is down, and the finding is audited.
//!
//! The findings of one broker are handled in the order they were made, one at a time, so
//! "no finding for the control" is read once the finding made after it is visible.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use common::webhook::{Receiver, SECRET, secret_file};
use common::{TRUST_DOMAIN, TestBroker};
use mayfly::alert::WebhookConfig;
use mayfly::alert::webhook::verify_signature;
use mayfly::config::{AnomalyAction, AnomalyConfig, AnomalyRule, Config};
use mayfly::outbound::HttpUrl;
use mayfly_sdk::jwt::Audience;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::revocation::RevocationWatch;
use mayfly_sdk::workload::{JwtVerifier, WorkloadClient, WorkloadError};

const AUDIENCE: &str = "billing-db";
const AGENT_PATH: &str = "/agent/node-1";
/// The rate floor of these tests: mints in one window.
const FLOOR: u32 = 20;
/// How long a test waits for something the broker does in the background; a bound on a
/// broken system, not a measure of speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Small thresholds: a one-second window with a floor of 20 mints, probing at 5 refusals
/// a minute, sources stable after 10 minutes; phi entries in `test` are quarantined,
/// `internal` ones alerted (the default for the rest).
fn anomaly_config() -> AnomalyConfig {
    AnomalyConfig {
        rate_window: Duration::from_secs(1),
        rate_floor: FLOOR,
        rate_factor: 10.0,
        refusal_count: 5,
        refusal_window: Duration::from_secs(60),
        source_stable_after: Duration::from_secs(600),
        rules: vec![
            AnomalyRule {
                environment: Some("test".into()),
                data_class: Some("phi".into()),
                action: AnomalyAction::Quarantine,
            },
            AnomalyRule {
                environment: None,
                data_class: Some("internal".into()),
                action: AnomalyAction::Alert,
            },
        ],
        ..AnomalyConfig::default()
    }
}

/// A broker on the test's clock with [`anomaly_config`] and `configure`, past the first
/// window after its start (in which the detectors only learn).
async fn broker(configure: impl Fn(&mut Config) + Send + Sync + 'static) -> TestBroker {
    let broker = TestBroker::start_on_manual_clock(move |config| {
        config.anomaly = anomaly_config();
        configure(config);
    })
    .await;
    broker.clock.advance(Duration::from_secs(2));
    broker
}

/// An entry at `path` of `data_class` (environment `test`) allowed [`AUDIENCE`].
async fn entry(
    broker: &TestBroker,
    path: &str,
    data_class: &str,
    parent: Option<&str>,
    selectors: &[&str],
) -> pb::Entry {
    let mut spec = TestBroker::entry_spec(path, &[AUDIENCE], selectors);
    spec.data_class = Some(data_class.into());
    spec.parent_id = parent.map(|p| format!("spiffe://{TRUST_DOMAIN}{p}"));
    broker.create_entry_from(spec).await.unwrap()
}

/// The entry's X509-SVID, by a fresh join token.
async fn enroll(broker: &TestBroker, entry: &pb::Entry) -> common::Svid {
    broker
        .attest(&broker.join_token(&entry.id, 0).await)
        .await
        .unwrap()
}

/// `count` JWT-SVID mints, each of which must succeed.
async fn mints(broker: &TestBroker, svid: &common::Svid, count: u32) -> String {
    let client = broker.broker_as(svid).await;
    let mut token = String::new();
    for _ in 0..count {
        token = common::mint_via(client.clone(), AUDIENCE, 0)
            .await
            .unwrap()
            .token;
    }
    token
}

/// The `anomaly.detected` records about `entry`.
fn findings(broker: &TestBroker, entry: &pb::Entry) -> Vec<serde_json::Value> {
    broker
        .audit_records("anomaly.detected")
        .into_iter()
        .filter(|record| record["entry_id"] == entry.id.as_str())
        .collect()
}

/// The value of `mayfly_anomalies_total` for `detector` and `action`.
async fn anomalies_metric(broker: &TestBroker, detector: &str, action: &str) -> Option<f64> {
    let (status, body) = broker.http_get("/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|line| line.starts_with("mayfly_anomalies_total{"))
        .find(|line| {
            line.contains(&format!("detector=\"{detector}\""))
                && line.contains(&format!("action=\"{action}\""))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_quarantines_the_entry_and_every_verifier_rejects_the_token_it_held() {
    let mut broker = broker(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let own_selector = format!("unix:uid:{}", common::my_uid(dir.path()));
    let agent_token = broker.agent_join_token(AGENT_PATH).await;
    // This process's identity at the agent, so that it may ask the agent to validate.
    entry(
        &broker,
        "/billing/web",
        "internal",
        Some(AGENT_PATH),
        &[&own_selector],
    )
    .await;
    let quarantined = entry(&broker, "/billing/api", "phi", None, &[]).await;
    let alerted = entry(&broker, "/reports/api", "internal", None, &[]).await;
    let quiet = entry(&broker, "/quiet/api", "phi", None, &[]).await;
    let socket = dir.path().join("run").join("agent.sock");
    let agent = mayfly_agent::start(broker.agent_config(
        socket.clone(),
        dir.path().join("agent"),
        Some(&agent_token),
    ))
    .await
    .unwrap();
    let client = WorkloadClient::connect(&format!("unix://{}", socket.display()))
        .await
        .unwrap();
    let watch = RevocationWatch::from_client(broker.broker().await)
        .await
        .unwrap();
    let verifier = JwtVerifier::new(client.clone())
        .await
        .unwrap()
        .with_revocations(watch);
    let audience = Audience::new(AUDIENCE).unwrap();

    // Below the floor, under the quarantine rule: nothing. Over it under the alert rule:
    // an alert only.
    let quiet_svid = enroll(&broker, &quiet).await;
    mints(&broker, &quiet_svid, FLOOR / 2).await;
    let alerted_svid = enroll(&broker, &alerted).await;
    let alerted_token = mints(&broker, &alerted_svid, FLOOR + 5).await;

    // The token the quarantined entry holds passes everywhere first.
    let svid = enroll(&broker, &quarantined).await;
    let held = mints(&broker, &svid, 1).await;
    broker.validate(&held, AUDIENCE).await.unwrap();
    client.validate_jwt_svid(&held, &audience).await.unwrap();
    verifier.verify(&held, &audience).unwrap();

    // The burst: the mint that crosses the floor (the attestation counts as one) trips
    // the detector; the quarantine that follows may cut the burst short.
    let started = Instant::now();
    let connection = broker.broker_as(&svid).await;
    let mut granted = 1;
    let mut stopped = None;
    for _ in 0..(FLOOR * 5) {
        match common::mint_via(connection.clone(), AUDIENCE, 0).await {
            Ok(_) => granted += 1,
            Err(status) => {
                stopped = Some(status);
                break;
            }
        }
    }
    assert!(granted >= FLOOR, "{granted} mints, then {stopped:?}");
    if let Some(status) = &stopped {
        assert!(
            matches!(
                status.code(),
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
            ),
            "{status:?}"
        );
    }

    let mut took = [None; 3];
    while started.elapsed() < PATIENCE && took.iter().any(Option::is_none) {
        if took[0].is_none() && broker.validate(&held, AUDIENCE).await.is_err() {
            took[0] = Some(started.elapsed());
        }
        if took[1].is_none() && client.validate_jwt_svid(&held, &audience).await.is_err() {
            took[1] = Some(started.elapsed());
        }
        if took[2].is_none()
            && matches!(
                verifier.verify(&held, &audience),
                Err(WorkloadError::Revoked { .. })
            )
        {
            took[2] = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let [broker_took, agent_took, sdk_took] =
        took.map(|t| t.expect("every verifier rejects the quarantined entry's token"));
    println!(
        "burst start -> rejected: broker {:.1} ms, agent {:.1} ms, SDK verifier {:.1} ms",
        broker_took.as_secs_f64() * 1e3,
        agent_took.as_secs_f64() * 1e3,
        sdk_took.as_secs_f64() * 1e3
    );
    let refused = broker.validate(&held, AUDIENCE).await.unwrap_err();
    assert!(refused.message().contains("revoked"), "{refused:?}");

    // Disabled by the detectors, with the detector and figures in the reason.
    let disabled = broker
        .entry(&quarantined.id)
        .await
        .disabled
        .expect("the entry is disabled");
    assert_eq!(disabled.by, "mayfly-anomaly");
    assert!(
        disabled.reason.contains("rate-spike"),
        "{}",
        disabled.reason
    );
    assert!(
        disabled.reason.contains(&format!("{} mints", FLOOR + 1)),
        "{}",
        disabled.reason
    );
    common::wait_for("the quarantine's finding", || {
        !findings(&broker, &quarantined).is_empty()
    })
    .await;
    let found = findings(&broker, &quarantined);
    assert_eq!(found.len(), 1, "{found:#?}");
    let finding = &found[0];
    assert_eq!(finding["actor"], "mayfly-anomaly");
    assert_eq!(
        finding["spiffe_id"],
        format!("spiffe://{TRUST_DOMAIN}/billing/api")
    );
    assert_eq!(finding["detail"]["detector"], "rate-spike");
    assert_eq!(finding["detail"]["action"], "quarantine");
    assert_eq!(finding["detail"]["figures"]["mints"], FLOOR + 1);
    assert_eq!(finding["detail"]["figures"]["threshold"], f64::from(FLOOR));
    assert!(
        finding["detail"]["disabled"]["ok"].is_string(),
        "{finding:#}"
    );
    assert_eq!(
        finding["detail"]["revoked"]["ok"],
        format!("entry:{}", quarantined.id)
    );
    assert!(
        !finding.to_string().contains(&held),
        "no token in the record"
    );
    let by_detectors = |action: &str| {
        broker
            .audit_records(action)
            .into_iter()
            .filter(|r| r["actor"] == "mayfly-anomaly")
            .count()
    };
    assert_eq!(by_detectors("entry.disable"), 1);
    assert_eq!(by_detectors("revocation.revoke"), 1);
    assert_eq!(
        anomalies_metric(&broker, "rate-spike", "quarantine").await,
        Some(1.0)
    );

    // The alert rule's entry: one finding, alerted only, still minting.
    let found = findings(&broker, &alerted);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["detail"]["action"], "alert");
    assert_eq!(found[0]["detail"]["alert"], "no webhook");
    assert!(broker.entry(&alerted.id).await.disabled.is_none());
    broker.validate(&alerted_token, AUDIENCE).await.unwrap();
    mints(&broker, &alerted_svid, 1).await;
    assert_eq!(
        anomalies_metric(&broker, "rate-spike", "alert").await,
        Some(1.0)
    );
    // Below the floor: nothing at all.
    assert!(findings(&broker, &quiet).is_empty());
    mints(&broker, &quiet_svid, 1).await;

    // Enabled again, the entry mints: once the backdating of a new certificate's
    // notBefore (30 s) is past the quarantine, so that the revocation does not cover it.
    broker
        .admin()
        .await
        .enable_entry(pb::EnableEntryRequest {
            id: quarantined.id.clone(),
            reason: "the owner ran a load test; INC-42".into(),
        })
        .await
        .unwrap();
    broker.clock.advance(Duration::from_secs(31));
    let svid = enroll(&broker, &quarantined).await;
    // The new certificate is checked against the real clock on the TLS handshake.
    let not_before = broker.clock_dyn().unix_now() - 30;
    while SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= u64::try_from(not_before).unwrap()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = mints(&broker, &svid, 1).await;
    assert_ne!(fresh, held);
    broker.validate(&fresh, AUDIENCE).await.unwrap();
    let started = Instant::now();
    loop {
        match client.validate_jwt_svid(&fresh, &audience).await {
            Ok(_) => break,
            Err(error) => assert!(started.elapsed() < PATIENCE, "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What it held before stays revoked.
    assert!(broker.validate(&held, AUDIENCE).await.is_err());

    agent.shutdown().await;
    broker.stop().await;
}

async fn broker_with_webhook(url: &str, secret: PathBuf) -> TestBroker {
    let url = HttpUrl::parse(url).unwrap();
    broker(move |config| {
        config.alerts.webhook = Some(WebhookConfig {
            url: url.clone(),
            secret_file: secret.clone(),
            ca_file: None,
        });
    })
    .await
}

/// `count` mints for an audience the entry is not allowed, each refused.
async fn probe(broker: &TestBroker, svid: &common::Svid, count: u32) {
    let client = broker.broker_as(svid).await;
    for _ in 0..count {
        let refused = common::mint_via(client.clone(), "payroll-db", 0)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_probing_raises_a_signed_alert_and_fewer_refusals_none() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, url) = Receiver::start(&[]).await;
    let mut broker = broker_with_webhook(&url, secret_file(dir.path())).await;
    let control = entry(&broker, "/probe/control", "internal", None, &[]).await;
    let prober = entry(&broker, "/probe/prober", "internal", None, &[]).await;
    let control_svid = enroll(&broker, &control).await;
    let prober_svid = enroll(&broker, &prober).await;
    // One refusal short of the burst for the control; the burst for the prober.
    probe(&broker, &control_svid, 4).await;
    probe(&broker, &prober_svid, 5).await;
    // Positive control: the prober's allowed audience still mints.
    mints(&broker, &prober_svid, 1).await;

    common::wait_for("the alert", || !receiver.got().is_empty()).await;
    common::wait_for("the finding", || !findings(&broker, &prober).is_empty()).await;
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{got:#?}");
    let delivered = &got[0];
    assert_eq!(delivered.headers["mayfly-event"], "anomaly.detected");
    let signature = delivered.headers["mayfly-signature"].to_str().unwrap();
    let now = broker.clock_dyn().unix_now();
    verify_signature(
        SECRET.as_bytes(),
        signature,
        &delivered.body,
        now,
        Duration::from_secs(300),
    )
    .unwrap();
    // Negative control: the signature does not cover another body.
    let mut changed = delivered.body.to_vec();
    changed[10] ^= 1;
    assert!(
        verify_signature(
            SECRET.as_bytes(),
            signature,
            &changed,
            now,
            Duration::from_secs(300)
        )
        .is_err()
    );
    let alert: serde_json::Value = serde_json::from_slice(&delivered.body).unwrap();
    assert_eq!(alert["kind"], "anomaly.detected");
    assert_eq!(alert["subject"], "team@example.org");
    assert_eq!(alert["trust_domain"], TRUST_DOMAIN);
    let body = &alert["body"];
    assert_eq!(body["entry_id"], prober.id.as_str());
    assert_eq!(
        body["spiffe_id"],
        format!("spiffe://{TRUST_DOMAIN}/probe/prober")
    );
    assert_eq!(body["detector"], "refusal-burst");
    assert_eq!(body["action"], "alert");
    assert_eq!(body["figures"]["refusals"], 5);
    assert!(
        body["figures"]["last_reason"]
            .as_str()
            .unwrap()
            .contains("payroll-db"),
        "{body:#}"
    );
    assert!(
        !String::from_utf8_lossy(&delivered.body).contains("eyJ"),
        "no token in the alert"
    );
    let found = findings(&broker, &prober);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["detail"]["alert"], "queued");
    assert!(findings(&broker, &control).is_empty());
    common::wait_for("the delivery's record", || {
        !broker.audit_records("alert.delivered").is_empty()
    })
    .await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_source_after_stable_ones_is_a_finding_and_before_stability_it_is_not() {
    let mut broker = broker(|_| {}).await;
    let used = entry(&broker, "/batch/api", "internal", None, &[]).await;
    // Two sources at once: the join token that enrolled it and the workload itself.
    let svid = enroll(&broker, &used).await;
    mints(&broker, &svid, 1).await;
    // Stable for 11 minutes (10 needed), the known one is no finding; a new one is.
    broker.clock.advance(Duration::from_secs(11 * 60));
    let token = broker.join_token(&used.id, 0).await;
    broker.attest(&token).await.unwrap();
    common::wait_for("the finding", || !findings(&broker, &used).is_empty()).await;
    let found = findings(&broker, &used);
    assert_eq!(found.len(), 1, "one finding, after stability: {found:#?}");
    let detail = &found[0]["detail"];
    assert_eq!(detail["detector"], "new-source");
    assert_eq!(detail["action"], "alert");
    let source = detail["figures"]["source"].as_str().unwrap();
    assert!(source.starts_with("join_token:"), "{source}");
    assert!(!token.contains(source.trim_start_matches("join_token:")));
    assert_eq!(detail["figures"]["known_sources"], 2);
    assert_eq!(detail["figures"]["stable_for_secs"], 11 * 60);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_goes_on_while_the_webhook_is_down_and_the_finding_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    drop(listener);
    let mut broker = broker_with_webhook(&url, secret_file(dir.path())).await;
    let busy = entry(&broker, "/busy/api", "internal", None, &[]).await;
    let svid = enroll(&broker, &busy).await;
    let token = mints(&broker, &svid, FLOOR * 3).await;
    common::wait_for("the finding", || !findings(&broker, &busy).is_empty()).await;
    let found = findings(&broker, &busy);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["detail"]["detector"], "rate-spike");
    assert_eq!(found[0]["detail"]["alert"], "queued");
    // The webhook is still down: minting and validation go on.
    mints(&broker, &svid, FLOOR).await;
    broker.validate(&token, AUDIENCE).await.unwrap();
    broker.stop().await;
}
