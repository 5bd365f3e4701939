//! `/metrics`: the broker's counters and gauges as Prometheus text, read by
//! tools we did not write.
//!
//! - The exposition after a known number of grants and refusals holds
//!   exactly those counts (the parsing here is a plain line reader, and a
//!   refusal of another class is counted apart: the negative control).
//! - `promtool check metrics` accepts the exposition.
//! - A real Prometheus server scrapes the broker, and its HTTP query API
//!   returns the same counts.
//!
//! promtool and prometheus come from Debian's `prometheus` package, which
//! `.ci/run` installs when missing. Without them the tests that need them
//! say so and pass, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestBroker;
use common::prometheus::{Prometheus, broker_with_known_traffic, prometheus_value, tool};

/// One sample line of the exposition: its name, its labels and its value.
type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

fn parse(exposition: &str) -> Samples {
    let mut samples = Vec::new();
    for line in exposition.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect(line);
                let labels = body
                    .split(',')
                    .map(|pair| {
                        let (key, value) = pair.split_once('=').expect(line);
                        (key.to_owned(), value.trim_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        samples.push((name, labels, value.parse().expect(line)));
    }
    samples
}

/// The value of the one sample of `name` whose labels include `labels`
/// (0 when there is none: a counter not yet incremented is absent).
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
    matching.first().copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_grants_and_refusals_by_class() {
    let mut broker = broker_with_known_traffic().await;
    let (status, body) = broker.http_get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    let samples = parse(&body);
    let credentials = "mayfly_credentials_total";
    let jwt = |outcome, refusal| {
        value(
            &samples,
            credentials,
            &[("kind", "jwt"), ("outcome", outcome), ("refusal", refusal)],
        )
    };
    assert_eq!(jwt("granted", "none"), 3.0, "{body}");
    assert_eq!(jwt("refused", "denied"), 2.0, "{body}");
    // Negative control: no JWT was refused for another reason.
    assert_eq!(jwt("refused", "unproven"), 0.0, "{body}");
    let x509 = |outcome, refusal| {
        value(
            &samples,
            credentials,
            &[("kind", "x509"), ("outcome", outcome), ("refusal", refusal)],
        )
    };
    assert_eq!(x509("granted", "none"), 1.0, "{body}");
    assert_eq!(x509("refused", "unproven"), 1.0, "{body}");
    assert_eq!(
        value(
            &samples,
            "mayfly_attestations_total",
            &[("attestor", "join_token"), ("outcome", "passed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "mayfly_attestations_total",
            &[("attestor", "join_token"), ("outcome", "refused")]
        ),
        1.0
    );
    // Three TTLs, three cache keys: each a miss.
    assert_eq!(
        value(
            &samples,
            "mayfly_cache_requests_total",
            &[("cache", "jwt_svid"), ("result", "miss")]
        ),
        3.0
    );
    assert_eq!(value(&samples, "mayfly_entries", &[]), 1.0);
    for kind in ["entry", "spiffe-id", "jti", "serial", "agent"] {
        assert_eq!(
            value(&samples, "mayfly_revocations", &[("kind", kind)]),
            0.0,
            "{kind}: {body}"
        );
    }
    // Signing is timed once per signature: 3 JWTs signed (3 cache misses)
    // and one X.509-SVID; the refusals signed nothing.
    let signed = |kind| {
        value(
            &samples,
            "mayfly_signing_duration_seconds_count",
            &[("kind", kind)],
        )
    };
    assert_eq!(signed("jwt"), 3.0, "{body}");
    assert_eq!(signed("x509"), 1.0, "{body}");
    // Connections the test's clients hold: one or more, none anonymous
    // beyond that count.
    let all = value(&samples, "mayfly_connections", &[("peer", "all")]);
    let anonymous = value(&samples, "mayfly_connections", &[("peer", "anonymous")]);
    assert!(all >= 1.0 && anonymous <= all, "{body}");
    // The next rotation steps: a fresh intermediate and JWT key are far
    // from half their life.
    for kind in ["intermediate", "jwt"] {
        let due = value(
            &samples,
            "mayfly_ca_rotation_due_seconds",
            &[("kind", kind)],
        );
        assert!(due > 86_400.0, "{kind}: {body}");
    }
    let root = value(&samples, "mayfly_ca_expiry_seconds", &[("kind", "root")]);
    let intermediate = value(
        &samples,
        "mayfly_ca_expiry_seconds",
        &[("kind", "intermediate")],
    );
    assert!(root > intermediate && intermediate > 0.0, "{body}");
    // The JWT key's configured life (30 days by default) from its activation.
    let jwt = value(&samples, "mayfly_ca_expiry_seconds", &[("kind", "jwt")]);
    assert!(jwt > 29.0 * 86_400.0 && jwt <= 30.0 * 86_400.0, "{body}");
    // A fresh CA has no successor prepared yet.
    for kind in ["root", "intermediate", "jwt"] {
        assert_eq!(
            value(&samples, "mayfly_ca_successor", &[("kind", kind)]),
            0.0,
            "{kind}: {body}"
        );
    }
    // Every audit record was counted in a group commit, and the head is the
    // log's last record.
    let last_seq = common::last_audit_record(&broker.data_dir())["seq"]
        .as_f64()
        .unwrap();
    assert_eq!(value(&samples, "mayfly_audit_head_sequence", &[]), last_seq);
    let commits = value(
        &samples,
        "mayfly_audit_commit_duration_seconds_count",
        &[("outcome", "durable")],
    );
    assert!(commits >= 1.0 && commits <= last_seq, "{body}");
    assert_eq!(
        value(
            &samples,
            "mayfly_audit_commit_duration_seconds_count",
            &[("outcome", "failed")]
        ),
        0.0
    );
    assert_eq!(
        value(&samples, "mayfly_audit_commit_records_sum", &[]),
        last_seq,
        "{body}"
    );
    // Every broker RPC is timed, by method and status code (OTel RPC
    // conventions): 3 mints answered OK, 2 PERMISSION_DENIED (7), one
    // attestation OK and one UNAUTHENTICATED (16).
    let rpc = |method, code| {
        value(
            &samples,
            "rpc_server_call_duration_seconds_count",
            &[
                ("rpc_system", "grpc"),
                ("rpc_service", "mayfly.v1.Broker"),
                ("rpc_method", method),
                ("rpc_grpc_status_code", code),
            ],
        )
    };
    assert_eq!(rpc("MintJwtSvid", "0"), 3.0, "{body}");
    assert_eq!(rpc("MintJwtSvid", "7"), 2.0, "{body}");
    assert_eq!(rpc("AttestAndIssue", "0"), 1.0, "{body}");
    assert_eq!(rpc("AttestAndIssue", "16"), 1.0, "{body}");
    assert_eq!(rpc("ValidateJwtSvid", "0"), 0.0, "{body}");
    // No SPIFFE ID, entry id or audience is a label.
    for secretish in ["spiffe://", entry_id_of(&broker).await.as_str(), "\"db\""] {
        assert!(!body.contains(secretish), "{secretish} in {body}");
    }

    let Some(promtool) = tool("promtool") else {
        broker.stop().await;
        return;
    };
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // Positive control for promtool itself: it refuses a broken exposition.
    let mut broken = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    broken
        .stdin
        .take()
        .unwrap()
        .write_all(b"# TYPE x counter\nx{a=\"1\" 1\n")
        .unwrap();
    assert!(!broken.wait().unwrap().success());
    broker.stop().await;
}

async fn entry_id_of(broker: &TestBroker) -> String {
    let mut admin = broker.admin().await;
    let entries = admin
        .list_entries(mayfly_sdk::proto::v1::ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    entries[0].id.clone()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_broker() {
    let Some(binary) = tool("prometheus") else {
        return;
    };
    let mut broker = broker_with_known_traffic().await;
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(binary, dir.path(), broker.server().http_addr());
    let granted = r#"mayfly_credentials_total{job="mayfly",kind="jwt",outcome="granted"}"#;
    let denied = r#"mayfly_credentials_total{job="mayfly",kind="jwt",refusal="denied"}"#;
    let started = Instant::now();
    let mut seen = (None, None);
    // Prometheus needs a few seconds to start and scrape; the deadline only
    // bounds a broken setup.
    while started.elapsed() < Duration::from_secs(60) {
        seen = (
            prometheus_value(prometheus.port, granted).await,
            prometheus_value(prometheus.port, denied).await,
        );
        if seen.0.is_some() && seen.1.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert_eq!(seen, (Some(3.0), Some(2.0)), "prometheus log:\n{log}");
    // Negative control: a series the broker does not have stays empty.
    let absent = r#"mayfly_credentials_total{job="mayfly",refusal="internal"}"#;
    assert_eq!(prometheus_value(prometheus.port, absent).await, None);
    // Prometheus' own view of the target: up, scraped without errors.
    assert_eq!(
        prometheus_value(prometheus.port, r#"up{job="mayfly"}"#).await,
        Some(1.0)
    );
    drop(prometheus);
    broker.stop().await;
}

/// The alert rules in `deploy/prometheus` load, fire on the series their
/// unit tests give them and on no other (`promtool test rules` compares the
/// whole list of firing alerts), and name only metrics a broker exports.
#[tokio::test]
async fn the_alert_rules_load_fire_as_tested_and_name_real_metrics() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let run = Command::new(promtool)
            .args(args)
            .current_dir(&deploy)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
    }

    // Every mayfly_* name in the rules is a family the broker exports.
    let mut broker = broker_with_known_traffic().await;
    let (_, body) = broker.http_get("/metrics").await;
    broker.stop().await;
    let families: Vec<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    // Exported only with a shared store (Redis), which this broker has not.
    // (tests/replicas.rs and tests/audit_witness.rs read these from brokers on
    // Redis.) And the anchors' writes, only with an anchor configured (`[audit]
    // anchor_file`, `anchor_url`, `anchor_syslog`).
    let shared_store_only = [
        "mayfly_revocation_staleness_seconds",
        "mayfly_revocation_staleness_bound_seconds",
        "mayfly_store_connected",
        "mayfly_audit_witness_findings_total",
        // tests/audit_evidence.rs reads this one from a broker with an anchor file,
        // tests/audit_sinks.rs from brokers with an HTTP witness and syslog.
        "mayfly_audit_anchor_writes_total",
    ];
    let rules = std::fs::read_to_string(deploy.join("alerts.yml")).unwrap();
    let mut named = 0;
    for token in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !token.starts_with("mayfly_") || !token.ends_with(|c: char| c.is_ascii_lowercase()) {
            continue;
        }
        named += 1;
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| token.strip_suffix(suffix))
            .filter(|base| families.contains(base))
            .unwrap_or(token);
        assert!(
            families.contains(&family) || shared_store_only.contains(&family),
            "alerts.yml names {token}, which the broker does not export:\n{body}"
        );
    }
    assert!(named >= 9, "the rules name {named} metrics");
}

/// `[telemetry] prometheus = false` takes `/metrics` off the HTTP port; the
/// default broker above serves it (the positive control).
#[tokio::test]
async fn metrics_can_be_turned_off() {
    let mut broker =
        TestBroker::start_configured(|config| config.telemetry.prometheus = false).await;
    let (status, _) = broker.http_get("/metrics").await;
    assert_eq!(status, 404);
    // The rest of the HTTP port is unchanged.
    let (status, _) = broker.http_get("/healthz").await;
    assert_eq!(status, 200);
    broker.stop().await;
}

#[tokio::test]
async fn revocations_count_by_kind_and_validations_by_cache_result() {
    let mut broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/ledger", &["db"]).await;
    let minted = broker.mint(&svid, "db", 0).await.unwrap();
    let (token, jti) = (minted.token, minted.jti);
    // Verified once, then answered from the verified-token cache.
    for _ in 0..2 {
        broker.validate(&token, "db").await.unwrap();
    }
    common::revoke_via(broker.admin().await, "jti", &jti, "test")
        .await
        .unwrap();
    // Still a cache hit, and refused: the revocation check runs every time.
    assert!(broker.validate(&token, "db").await.is_err());
    let (status, body) = broker.http_get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    let samples = parse(&body);
    let cache = |result| {
        value(
            &samples,
            "mayfly_cache_requests_total",
            &[("cache", "verified_token"), ("result", result)],
        )
    };
    assert_eq!(cache("miss"), 1.0, "{body}");
    assert_eq!(cache("hit"), 2.0, "{body}");
    assert_eq!(
        value(&samples, "mayfly_revocations", &[("kind", "jti")]),
        1.0,
        "{body}"
    );
    // Negative control: the other kinds stay at 0.
    for kind in ["entry", "spiffe-id", "serial", "agent"] {
        assert_eq!(
            value(&samples, "mayfly_revocations", &[("kind", kind)]),
            0.0,
            "{kind}: {body}"
        );
    }
    broker.stop().await;
}
