//! Alerts as OpenTelemetry log events (issue 17, "Alerts": a sink behind one interface),
//! received by an OTLP collector inside the test: a tonic server and an HTTP endpoint
//! (axum, decoding with prost) built from the `opentelemetry-proto` crate's definitions,
//! not from Mayfly's code; beside it, the webhook's receiver (axum, tests/common/webhook.rs) and the `mayfly`
//! binary.
//!
//! - `mayfly alerts test` and an owners' digest round each become one log record
//!   (event `mayfly.alert`, severity WARN, the alert's fields as attributes), over gRPC
//!   and over HTTP/protobuf, and the same alert reaches the webhook with the same
//!   delivery id. No attribute, body or resource value holds the webhook's secret or a
//!   byte of any private key in the data directory.
//! - A collector answering 503 is tried again; the record then arrives.
//! - With the webhook down, the log output still delivers, at once, while the webhook's
//!   tries go on; each output's fate is its own audit record and its own answer.
//! - `[alerts] otel_logs = true` without an OTLP endpoint stops the server before it
//!   binds anything; with one, the same file is accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::TestBroker;
use common::webhook::{Receiver, SECRET, secret_file};
use mayfly::alert::WebhookConfig;
use mayfly::outbound::HttpUrl;
use mayfly_sdk::proto::v1 as pb;
use mayfly_telemetry::Protocol;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;

const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");
const DAY: u64 = 86_400;

/// The collector: what it received, per request, and the statuses its HTTP endpoint
/// answers next (200 once the plan is used up).
#[derive(Default)]
struct Collector {
    requests: Mutex<Vec<(String, ExportLogsServiceRequest)>>,
    http_plan: Mutex<VecDeque<u16>>,
    http_refused: Mutex<usize>,
}

#[derive(Clone)]
struct Grpc(Arc<Collector>);

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0
            .requests
            .lock()
            .unwrap()
            .push(("grpc".to_owned(), request.into_inner()));
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

async fn http_logs(
    State(collector): State<Arc<Collector>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    assert_eq!(headers["content-type"], "application/x-protobuf");
    let status = collector
        .http_plan
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(200);
    if status != 200 {
        *collector.http_refused.lock().unwrap() += 1;
        return (StatusCode::from_u16(status).unwrap(), Vec::new());
    }
    let request = ExportLogsServiceRequest::decode(body).unwrap();
    collector
        .requests
        .lock()
        .unwrap()
        .push(("/v1/logs".to_owned(), request));
    (
        StatusCode::OK,
        ExportLogsServiceResponse::default().encode_to_vec(),
    )
}

/// One record as received: the path it came by, the resource's `service.name`, the
/// record.
struct Received {
    path: String,
    service: String,
    record: LogRecord,
}

impl Collector {
    /// Starts OTLP/gRPC and OTLP/HTTP on ports of their own: the collector and the
    /// endpoint `protocol` uses.
    async fn start(protocol: Protocol, http_plan: &[u16]) -> (Arc<Self>, String) {
        let collector = Arc::new(Collector {
            http_plan: Mutex::new(http_plan.iter().copied().collect()),
            ..Collector::default()
        });
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = grpc_listener.local_addr().unwrap();
        let service = Grpc(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(LogsServiceServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                    grpc_listener,
                ))
                .await
                .unwrap();
        });
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/v1/logs", axum::routing::post(http_logs))
            .with_state(collector.clone());
        tokio::spawn(async move { axum::serve(http_listener, app).await.unwrap() });
        let endpoint = match protocol {
            Protocol::Grpc => format!("http://{grpc}"),
            Protocol::HttpProtobuf => format!("http://{http}"),
        };
        (collector, endpoint)
    }

    fn records(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for (path, request) in self.requests.lock().unwrap().iter() {
            for resource_logs in &request.resource_logs {
                let service = resource_logs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .map(|a| text(a.value.as_ref()))
                    .unwrap_or_default();
                for scope in &resource_logs.scope_logs {
                    for record in &scope.log_records {
                        out.push(Received {
                            path: path.clone(),
                            service: service.clone(),
                            record: record.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every request as text (its debug form holds every string and byte received),
    /// for the secret search.
    fn everything(&self) -> String {
        format!("{:?}", self.requests.lock().unwrap())
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(n)) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn attribute(record: &LogRecord, key: &str) -> Option<String> {
    record
        .attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| text(a.value.as_ref()))
}

/// A broker on the test's clock with both outputs: the webhook at `webhook_url` and log
/// events to the collector at `endpoint` over `protocol`.
async fn broker_with_both(
    webhook_url: &str,
    secret: PathBuf,
    endpoint: &str,
    protocol: Protocol,
) -> TestBroker {
    let url = HttpUrl::parse(webhook_url).unwrap();
    let endpoint = endpoint.to_owned();
    TestBroker::start_on_manual_clock(move |config| {
        config.governance.sweep_every = Duration::from_secs(DAY);
        config.alerts.webhook = Some(WebhookConfig {
            url: url.clone(),
            secret_file: secret.clone(),
            ca_file: None,
        });
        config.alerts.otel_logs = true;
        config.telemetry.otlp.endpoint = Some(endpoint.clone());
        config.telemetry.otlp.protocol = protocol;
        config.telemetry.otlp.service_name = "mayfly-alerts-test".to_owned();
        // Only the log events matter here: no span or metric export to the collector.
        config.telemetry.otlp.traces = false;
        config.telemetry.otlp.metrics = false;
        config.telemetry.otlp.timeout = Duration::from_secs(5);
    })
    .await
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

/// What must never leave the broker in an alert: the webhook's secret, and the base64
/// lines of every private key (PEM) in the data directory.
fn secrets(data_dir: &Path) -> Vec<String> {
    let mut found = vec![SECRET.to_owned()];
    let mut dirs = vec![data_dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if text.contains("PRIVATE KEY-----") {
                found.extend(
                    text.lines()
                        .filter(|line| !line.starts_with("-----") && line.len() >= 32)
                        .map(str::to_owned),
                );
            }
        }
    }
    found
}

fn leaks(said: &str, secrets: &[String]) -> Vec<String> {
    secrets
        .iter()
        .filter(|secret| said.contains(secret.as_str()))
        .map(|secret| secret.chars().take(12).collect())
        .collect()
}

/// Both outputs, over `protocol`: a test alert and a digest round each reach the webhook
/// and the collector with one delivery id; the record says what the alert says, and no
/// secret.
async fn both_outputs_get_each_alert(protocol: Protocol) {
    let dir = tempfile::tempdir().unwrap();
    // Over HTTP, the collector answers the first export 503: it is tried again.
    let http_plan: &[u16] = match protocol {
        Protocol::HttpProtobuf => &[503],
        Protocol::Grpc => &[],
    };
    let (collector, endpoint) = Collector::start(protocol, http_plan).await;
    let (webhook, url) = Receiver::start(&[]).await;
    let mut broker = broker_with_both(&url, secret_file(dir.path()), &endpoint, protocol).await;
    let data = broker.data_dir();

    // `mayfly alerts test`: one line per output, exit status 0 when both took it.
    let output = mayfly(&data, &["alerts", "test", "--note", "both outputs, CHG-7"]);
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(lines[0].starts_with("webhook: delivered to"), "{said}");
    assert!(lines[1].starts_with("otel_logs: delivered to"), "{said}");
    let expected_tries = match protocol {
        Protocol::HttpProtobuf => "after 2 tries",
        Protocol::Grpc => "after 1 try",
    };
    assert!(lines[1].contains(expected_tries), "{said}");

    let got = collector.records();
    assert_eq!(got.len(), 1, "one record for one alert");
    let received = &got[0];
    let path = match protocol {
        Protocol::Grpc => "grpc",
        Protocol::HttpProtobuf => "/v1/logs",
    };
    assert_eq!(received.path, path);
    assert_eq!(received.service, "mayfly-alerts-test");
    let record = &received.record;
    assert_eq!(record.event_name, "mayfly.alert");
    assert_eq!(record.severity_number, 13, "WARN");
    assert_eq!(record.severity_text, "WARN");
    let posts = webhook.got();
    assert_eq!(posts.len(), 1);
    let delivery = posts[0].headers["mayfly-delivery"].to_str().unwrap();
    assert_eq!(
        attribute(record, "mayfly.alert.delivery").as_deref(),
        Some(delivery),
        "the same alert at both outputs"
    );
    assert!(said.contains(&format!("(delivery {delivery})")), "{said}");
    assert_eq!(
        attribute(record, "mayfly.alert.kind").as_deref(),
        Some("test")
    );
    assert_eq!(
        attribute(record, "mayfly.trust_domain").as_deref(),
        Some(common::TRUST_DOMAIN)
    );
    assert!(
        attribute(record, "mayfly.alert.subject")
            .unwrap()
            .starts_with("admin"),
        "{record:?}"
    );
    let webhook_json: serde_json::Value = serde_json::from_slice(&posts[0].body).unwrap();
    let body: serde_json::Value =
        serde_json::from_str(&attribute(record, "mayfly.alert.body").unwrap()).unwrap();
    assert_eq!(body, webhook_json["body"], "the same body at both outputs");
    assert_eq!(body["note"], "both outputs, CHG-7");
    assert_eq!(
        record.time_unix_nano,
        webhook_json["generated_at"].as_u64().unwrap() * 1_000_000_000
    );

    // An owners' digest round: one owner with an identity expiring within 14 days.
    let mut spec = TestBroker::entry_spec("/billing/api", &["orders"], &[]);
    spec.owner = Some("team-billing".into());
    spec.expires_at = Some(broker.clock_dyn().unix_now() + (5 * DAY) as i64);
    broker.create_entry_from(spec).await.unwrap();
    let outcome = broker.server().send_owner_digests().await.unwrap();
    assert!(
        matches!(outcome, mayfly::governance::DigestOutcome::Sent { .. }),
        "{outcome:?}"
    );
    common::wait_for("the digest at both outputs", || {
        collector.records().len() == 2 && webhook.got().len() == 2
    })
    .await;
    let digest = &collector.records()[1].record;
    let posted: serde_json::Value = serde_json::from_slice(&webhook.got()[1].body).unwrap();
    assert_eq!(
        attribute(digest, "mayfly.alert.kind").as_deref(),
        Some("owner-digest")
    );
    assert_eq!(
        attribute(digest, "mayfly.alert.subject").as_deref(),
        Some("team-billing")
    );
    assert_eq!(
        attribute(digest, "mayfly.alert.delivery"),
        posted["delivery"].as_str().map(str::to_owned)
    );
    let digest_body: serde_json::Value =
        serde_json::from_str(&attribute(digest, "mayfly.alert.body").unwrap()).unwrap();
    assert_eq!(digest_body, posted["body"]);
    assert!(
        digest_body.to_string().contains("/billing/api"),
        "{digest_body}"
    );

    // Each output's fate is its own audit record.
    common::wait_for("four delivered records", || {
        broker.audit_records("alert.delivered").len() == 4
    })
    .await;
    let outputs: Vec<String> = broker
        .audit_records("alert.delivered")
        .iter()
        .map(|r| r["detail"]["output"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        outputs.iter().filter(|o| *o == "otel_logs").count(),
        2,
        "{outputs:?}"
    );
    assert_eq!(
        outputs.iter().filter(|o| *o == "webhook").count(),
        2,
        "{outputs:?}"
    );
    // The metric counts each output apart.
    let (_, metrics) = broker.http_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("mayfly_alert_deliveries_total{")
                && line.contains("output=\"otel_logs\"")
                && line.contains("outcome=\"delivered\"")
                && line.ends_with(" 2")),
        "{metrics}"
    );

    // No secret anywhere in what the collector received; the search finds one where
    // there is one.
    let secrets = secrets(&data);
    assert!(secrets.len() > 1, "the data directory holds private keys");
    assert_eq!(
        leaks(&collector.everything(), &secrets),
        Vec::<String>::new()
    );
    let planted = format!("{}{}", collector.everything(), secrets[secrets.len() - 1]);
    assert_eq!(leaks(&planted, &secrets).len(), 1);
    if protocol == Protocol::HttpProtobuf {
        assert_eq!(*collector.http_refused.lock().unwrap(), 1);
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_log_records_over_grpc() {
    both_outputs_get_each_alert(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_log_records_over_http_protobuf_and_a_503_is_tried_again() {
    both_outputs_get_each_alert(Protocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_webhook_down_the_log_output_still_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, endpoint) = Collector::start(Protocol::Grpc, &[]).await;
    // A port that was just free: nothing answers there.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/alerts", listener.local_addr().unwrap())
    };
    let mut broker =
        broker_with_both(&down, secret_file(dir.path()), &endpoint, Protocol::Grpc).await;
    let mut admin = broker.admin().await;
    let asked = tokio::spawn(async move {
        admin
            .test_alert(pb::TestAlertRequest {
                note: "webhook down".into(),
            })
            .await
    });
    // The record arrives while the webhook's tries (1 + 2 + 4 + 8 s of waiting) go on.
    common::wait_for("the log record", || collector.records().len() == 1).await;
    assert!(
        !asked.is_finished(),
        "the webhook's fate is still open when the log output has delivered"
    );
    let answer = asked.await.unwrap().unwrap().into_inner();
    assert!(!answer.delivered, "{answer:?}");
    assert_eq!(answer.outputs.len(), 2, "{answer:?}");
    let (hook, logs) = (&answer.outputs[0], &answer.outputs[1]);
    // The negative: the webhook did not take it, after every try.
    assert_eq!(hook.output, "webhook");
    assert!(!hook.delivered && hook.tries == 5, "{hook:?}");
    assert!(!hook.error.is_empty(), "{hook:?}");
    // The positive control beside it: the log output delivered at the first try.
    assert_eq!(logs.output, "otel_logs");
    assert!(logs.delivered && logs.tries == 1, "{logs:?}");
    assert_eq!(logs.url, endpoint);
    // The summary fields name the output that failed.
    assert_eq!(answer.url, down);
    let record = &collector.records()[0].record;
    assert_eq!(
        attribute(record, "mayfly.alert.delivery"),
        Some(answer.delivery.clone())
    );
    let undelivered = broker.audit_records("alert.undelivered");
    assert_eq!(undelivered.len(), 1);
    assert_eq!(undelivered[0]["detail"]["output"], "webhook");
    assert_eq!(
        undelivered[0]["detail"]["delivery"],
        answer.delivery.as_str()
    );
    let delivered = broker.audit_records("alert.delivered");
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["detail"]["output"], "otel_logs");
    assert_eq!(delivered[0]["detail"]["delivery"], answer.delivery.as_str());
    broker.stop().await;
}

/// `mayfly server --config FILE` with `env` cleared of every OTLP endpoint variable.
fn server_with(config: &Path) -> Output {
    let mut command = Command::new(MAYFLY);
    command
        .args(["server", "--config"])
        .arg(config)
        .current_dir(config.parent().unwrap())
        .env_remove("MAYFLY_DATA_DIR")
        .env_remove("MAYFLY_CONFIG")
        .stdin(Stdio::null());
    for variable in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "MAYFLY_OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        command.env_remove(variable);
    }
    command.output().unwrap()
}

#[test]
fn otel_logs_without_an_otlp_endpoint_stops_the_server_before_it_binds() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mayfly.toml");
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!(
        "trust_domain = \"alerts.example\"\ndata_dir = \"{}\"\n\
         [listen]\ngrpc = \"{}\"\nhttp = \"127.0.0.1:0\"\n",
        data.display(),
        taken.local_addr().unwrap()
    );
    std::fs::write(&config, format!("{base}[alerts]\notel_logs = true\n")).unwrap();
    let output = server_with(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("alerts.otel_logs") && stderr.contains("otlp_endpoint"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one-line error: {stderr}");
    assert!(!data.exists(), "nothing created for a bad config");

    // Positive control: with an endpoint the same file passes the config check (the
    // server then fails only because its port is taken).
    std::fs::write(
        &config,
        format!(
            "{base}[telemetry]\notlp_endpoint = \"http://127.0.0.1:4317\"\n\
             [alerts]\notel_logs = true\n"
        ),
    )
    .unwrap();
    let output = server_with(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_output_a_test_alert_is_a_failed_precondition() {
    // A config built in code skips the file's check; the server still refuses log events
    // without a collector.
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path().join("data"));
    config.alerts.otel_logs = true;
    let Err(error) =
        mayfly::server::start_with_clock(config, Arc::new(mayfly::clock::SystemClock)).await
    else {
        panic!("no endpoint, no server");
    };
    assert!(error.to_string().contains("[alerts] otel_logs"), "{error}");

    // No output at all: the sink does not exist, and the answer says what to configure.
    let mut plain = TestBroker::start().await;
    let status = plain
        .admin()
        .await
        .test_alert(pb::TestAlertRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("webhook_url") && status.message().contains("otel_logs"),
        "{status:?}"
    );
    plain.stop().await;

    // Positive control: with the log output alone, the same call delivers.
    let (collector, endpoint) = Collector::start(Protocol::Grpc, &[]).await;
    let mut logs_only = TestBroker::start_configured(move |config| {
        config.alerts.otel_logs = true;
        config.telemetry.otlp.endpoint = Some(endpoint.clone());
        config.telemetry.otlp.traces = false;
        config.telemetry.otlp.metrics = false;
    })
    .await;
    let answer = logs_only
        .admin()
        .await
        .test_alert(pb::TestAlertRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(answer.delivered, "{answer:?}");
    assert_eq!(answer.outputs.len(), 1);
    assert_eq!(answer.outputs[0].output, "otel_logs");
    assert_eq!(collector.records().len(), 1);
    logs_only.stop().await;
}
