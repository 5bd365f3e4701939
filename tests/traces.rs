//! Traces and OTLP export, received by an OTLP collector inside the test
//! (a tonic server and an HTTP endpoint built from the `opentelemetry-proto`
//! crate's definitions, not from Mayfly's code).
//!
//! This file is its own process, so it installs the global subscriber with
//! the broker's and the agent's OTLP settings: sampling ratio 0, so a span
//! exists only where a caller's `traceparent` asked for one (which also
//! shows that an unsampled call costs no span).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{TRUST_DOMAIN, TestBroker, svid_from};
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::workload as wl;
use mayfly_telemetry::{OtlpConfig, Protocol, Tracing};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, span::SpanKind};
use prost::Message as _;

/// What the collector received.
#[derive(Debug, Default, Clone)]
struct Received {
    spans: Arc<Mutex<Vec<ResourceSpans>>>,
    metrics: Arc<Mutex<Vec<ResourceMetrics>>>,
    /// Requests per path (`grpc`, `/v1/traces`, `/v1/metrics`).
    requests: Arc<Mutex<HashMap<String, usize>>>,
}

impl Received {
    /// One export of spans, over `path` (`grpc`, `/v1/traces`).
    fn spans_from(&self, path: &str, request: ExportTraceServiceRequest) {
        self.count(path);
        self.spans.lock().unwrap().extend(request.resource_spans);
    }

    /// One export of metrics, over `path` (`grpc`, `/v1/metrics`).
    fn metrics_from(&self, path: &str, request: ExportMetricsServiceRequest) {
        self.count(path);
        self.metrics
            .lock()
            .unwrap()
            .extend(request.resource_metrics);
    }

    fn count(&self, path: &str) {
        *self
            .requests
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default() += 1;
    }

    /// Every span received, with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for resource_spans in self.spans.lock().unwrap().iter() {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    out.push((service.clone(), span.clone()));
                }
            }
        }
        out
    }

    fn spans_of(&self, trace_id: &[u8]) -> Vec<Span> {
        self.spans()
            .into_iter()
            .map(|(_, span)| span)
            .filter(|span| span.trace_id == trace_id)
            .collect()
    }

    fn metric_names(&self) -> HashSet<String> {
        self.metrics
            .lock()
            .unwrap()
            .iter()
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter())
            .map(|m| m.name.clone())
            .collect()
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.spans_from("grpc", request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics_from("grpc", request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The collector: OTLP/gRPC on one port, OTLP/HTTP (protobuf) on another.
struct Collector {
    grpc: std::net::SocketAddr,
    http: std::net::SocketAddr,
    received: Received,
}

impl Collector {
    async fn start() -> Collector {
        let received = Received::default();
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = grpc_listener.local_addr().unwrap();
        let service = received.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service.clone()))
                .add_service(MetricsServiceServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                    grpc_listener,
                ))
                .await
                .unwrap();
        });
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let traces = received.clone();
        let metrics = received.clone();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let received = traces.clone();
                    async move {
                        let request = ExportTraceServiceRequest::decode(body).unwrap();
                        received.spans_from("/v1/traces", request);
                        ExportTraceServiceResponse::default().encode_to_vec()
                    }
                }),
            )
            .route(
                "/v1/metrics",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let received = metrics.clone();
                    async move {
                        let request = ExportMetricsServiceRequest::decode(body).unwrap();
                        received.metrics_from("/v1/metrics", request);
                        ExportMetricsServiceResponse::default().encode_to_vec()
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(http_listener, app).await.unwrap() });
        Collector {
            grpc,
            http,
            received,
        }
    }
}

/// The process's collector and subscriber, on a runtime of their own that
/// outlives every test's (each `#[tokio::test]` has its own runtime, and
/// the span exporter runs on the runtime it was built in).
fn collector() -> &'static (Collector, Tracing, OtlpConfig) {
    static SHARED: OnceLock<(tokio::runtime::Runtime, (Collector, Tracing, OtlpConfig))> =
        OnceLock::new();
    let (_, shared) = SHARED.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let shared = runtime.block_on(async {
                let collector = Collector::start().await;
                let mut otlp = OtlpConfig::off("mayfly-test");
                otlp.endpoint = Some(format!("http://{}", collector.grpc));
                otlp.protocol = Protocol::Grpc;
                otlp.sampling_ratio = 0.0;
                otlp.metric_interval = Duration::from_millis(200);
                let tracing = Tracing::install(&otlp).unwrap();
                (collector, tracing, otlp)
            });
            (runtime, shared)
        })
        .join()
        .unwrap()
    });
    shared
}

/// A W3C `traceparent` with a fresh trace id and the sampled flag as given.
fn traceparent(sampled: bool) -> (String, Vec<u8>, Vec<u8>) {
    let trace_id: [u8; 16] = rand_bytes();
    let span_id: [u8; 8] = rand_bytes();
    let header = format!(
        "00-{}-{}-{}",
        hex::encode(trace_id),
        hex::encode(span_id),
        if sampled { "01" } else { "00" }
    );
    (header, trace_id.to_vec(), span_id.to_vec())
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).unwrap();
    out
}

fn with_traceparent<T>(message: T, header: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("traceparent", header.parse().unwrap());
    request
}

/// Waits until the spans of `trace_id` include every name in `names`.
async fn spans_named(
    received: &Received,
    tracing: &Tracing,
    trace_id: &[u8],
    names: &[&str],
) -> Vec<Span> {
    for _ in 0..100 {
        tracing.flush().await;
        let spans = received.spans_of(trace_id);
        if names
            .iter()
            .all(|name| spans.iter().any(|s| s.name == *name))
        {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spans = received.spans_of(trace_id);
    panic!(
        "spans of {} never included all of {names:?}: {:?} (the collector received {:?}, {} spans in all)",
        hex::encode(trace_id),
        spans.iter().map(|s| &s.name).collect::<Vec<_>>(),
        received.requests.lock().unwrap(),
        received.spans().len(),
    );
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            Some(Value::BoolValue(b)) => Some(b.to_string()),
            _ => None,
        })
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

/// Every string a span holds (name, attribute keys and values, events),
/// for the secret search.
fn everything_said(spans: &[(String, Span)]) -> String {
    format!("{spans:?}")
}

/// The secrets of a request, as they might leak: verbatim, and the key's
/// DER as hex and base64 (a PEM's body).
fn leaks(text: &str, secrets: &[&str]) -> Vec<String> {
    secrets
        .iter()
        .filter(|secret| !secret.is_empty() && text.contains(**secret))
        .map(|secret| secret.chars().take(12).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_attest_and_mint_are_traced_under_the_caller_s_trace_and_say_no_secret() {
    let (collector, tracing, otlp) = collector();
    let otlp = otlp.clone();
    let mut broker = TestBroker::start_configured(move |config| {
        config.telemetry.otlp = otlp.clone();
    })
    .await;
    let entry = broker.create_entry("/billing/api", &["billing-db"]).await;
    let token = broker.join_token(&entry.id, 0).await;

    // Attest with a sampled traceparent, then mint under the same trace.
    let (header, trace_id, caller_span) = traceparent(true);
    let (key, csr) = mayfly_sdk::client::new_key_and_csr().unwrap();
    let response = broker
        .broker()
        .await
        .attest_and_issue(with_traceparent(
            pb::AttestAndIssueRequest {
                evidence: Some(pb::attest_and_issue_request::Evidence::JoinToken(
                    pb::JoinTokenEvidence {
                        token: token.clone(),
                    },
                )),
                csr: csr.clone(),
                spiffe_id: String::new(),
            },
            &header,
        ))
        .await
        .unwrap()
        .into_inner();
    let svid = svid_from(response, &key);
    let minted = broker
        .broker_as(&svid)
        .await
        .mint_jwt_svid(with_traceparent(
            pb::MintJwtSvidRequest {
                audience: "billing-db".into(),
                ttl_seconds: 0,
            },
            &header,
        ))
        .await
        .unwrap()
        .into_inner();

    // A call without a traceparent, and one whose caller did not sample:
    // with ratio 0, neither is traced.
    let (unsampled, unsampled_trace, _) = traceparent(false);
    broker
        .broker_as(&svid)
        .await
        .mint_jwt_svid(with_traceparent(
            pb::MintJwtSvidRequest {
                audience: "billing-db".into(),
                ttl_seconds: 0,
            },
            &unsampled,
        ))
        .await
        .unwrap();
    broker.mint(&svid, "billing-db", 0).await.unwrap();

    let attest = "mayfly.v1.Broker/AttestAndIssue";
    let mint = "mayfly.v1.Broker/MintJwtSvid";
    let spans = spans_named(
        &collector.received,
        tracing,
        &trace_id,
        &[
            attest,
            mint,
            "mint.attest",
            "mint.store",
            "mint.policy",
            "mint.sign",
            "mint.audit_commit",
        ],
    )
    .await;

    // The RPC spans continue the caller's span, as servers.
    let attest_span = named(&spans, attest);
    let mint_span = spans
        .iter()
        .find(|s| s.name == mint)
        .expect("the mint span");
    for span in [attest_span, mint_span] {
        assert_eq!(span.parent_span_id, caller_span, "{}", span.name);
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(attribute(span, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(
            attribute(span, "rpc.service").as_deref(),
            Some("mayfly.v1.Broker")
        );
        assert_eq!(
            attribute(span, "rpc.grpc.status_code").as_deref(),
            Some("0")
        );
        assert_eq!(
            attribute(span, "mayfly.spiffe_id"),
            Some(format!("spiffe://{TRUST_DOMAIN}/billing/api"))
        );
        assert_eq!(attribute(span, "mayfly.entry_id"), Some(entry.id.clone()));
        assert_eq!(
            attribute(span, "mayfly.outcome").as_deref(),
            Some("granted")
        );
        assert_eq!(
            attribute(span, "mayfly.replica"),
            Some(broker.server().report().replica_id.clone())
        );
    }
    assert_eq!(
        attribute(attest_span, "rpc.method").as_deref(),
        Some("AttestAndIssue")
    );
    assert_eq!(
        attribute(mint_span, "mayfly.audience").as_deref(),
        Some("billing-db")
    );
    // The stages hang under their RPC.
    let attest_stage = named(&spans, "mint.attest");
    assert_eq!(attest_stage.parent_span_id, attest_span.span_id);
    assert_eq!(
        attribute(attest_stage, "mayfly.attestor").as_deref(),
        Some("join_token")
    );
    for stage in ["mint.policy", "mint.sign", "mint.audit_commit"] {
        let parents: HashSet<&[u8]> = spans
            .iter()
            .filter(|s| s.name == stage)
            .map(|s| s.parent_span_id.as_slice())
            .collect();
        assert!(
            parents.contains(attest_span.span_id.as_slice())
                && parents.contains(mint_span.span_id.as_slice()),
            "{stage} under both RPCs"
        );
    }

    // Not sampled: no span of the unsampled trace, and every trace
    // received is one a caller asked for.
    assert!(collector.received.spans_of(&unsampled_trace).is_empty());

    // No secret in any span: not the join token, the JWT-SVID, the CSR or
    // the private key (PEM body, DER as hex).
    let all = collector.received.spans();
    let said = everything_said(&all);
    let key_der = key.serialize_der();
    let key_pem = key.serialize_pem();
    let key_body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let csr_hex = hex::encode(&csr);
    let key_hex = hex::encode(&key_der);
    let secrets = [
        token.as_str(),
        minted.token.as_str(),
        key_body.as_str(),
        &key_body[..40],
        key_hex.as_str(),
        &csr_hex[..64],
    ];
    assert_eq!(leaks(&said, &secrets), Vec::<String>::new());
    // The search does find a secret where there is one.
    let planted = format!("{said}{}", minted.token);
    assert_eq!(leaks(&planted, &secrets).len(), 1);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_passes_the_workload_s_trace_on_to_the_broker_and_serves_metrics() {
    let (collector, tracing, otlp) = collector();
    let broker_otlp = otlp.clone();
    let mut broker = TestBroker::start_configured(move |config| {
        config.telemetry.otlp = broker_otlp.clone();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let uid = common::my_uid(dir.path());
    let agent_token = broker.agent_join_token("/agent/node-1").await;
    let mut spec = TestBroker::entry_spec(
        "/billing/api",
        &["billing-db"],
        &[&format!("unix:uid:{uid}")],
    );
    spec.parent_id = Some(format!("spiffe://{TRUST_DOMAIN}/agent/node-1"));
    broker.create_entry_from(spec).await.unwrap();
    let socket = dir.path().join("run").join("agent.sock");
    let mut config =
        broker.agent_config(socket.clone(), dir.path().join("agent"), Some(&agent_token));
    config.telemetry.otlp = otlp.clone();
    config.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let agent = mayfly_agent::start(config).await.unwrap();

    let (header, trace_id, caller_span) = traceparent(true);
    let mut client = common::raw_workload_client(&socket).await;
    let mut request = with_traceparent(
        wl::JwtsvidRequest {
            audience: vec!["billing-db".into()],
            spiffe_id: String::new(),
        },
        &header,
    );
    request
        .metadata_mut()
        .insert(mayfly_agent::SECURITY_HEADER, "true".parse().unwrap());
    let svids = client.fetch_jwtsvid(request).await.unwrap().into_inner();
    assert_eq!(svids.svids.len(), 1);

    let fetch = "SpiffeWorkloadAPI/FetchJWTSVID";
    let batch = "mayfly.v1.Broker/BatchMintJwtSvids";
    let spans = spans_named(
        &collector.received,
        tracing,
        &trace_id,
        &[fetch, "agent.mint", batch, "mint.sign"],
    )
    .await;
    let fetch_span = named(&spans, fetch);
    assert_eq!(fetch_span.parent_span_id, caller_span);
    assert_eq!(fetch_span.kind, SpanKind::Server as i32);
    let agent_mint = named(&spans, "agent.mint");
    assert_eq!(agent_mint.parent_span_id, fetch_span.span_id);
    // The broker's span is the child of the agent's, across the wire.
    let batch_span = named(&spans, batch);
    assert_eq!(batch_span.parent_span_id, agent_mint.span_id);
    let said = everything_said(&collector.received.spans());
    assert_eq!(
        leaks(&said, &[svids.svids[0].svid.as_str(), agent_token.as_str()]),
        Vec::<String>::new()
    );

    // The agent's own /metrics: its Workload API calls and cache look-ups.
    let addr = agent.metrics_addr().unwrap();
    let (status, text) = common::http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains(
            "rpc_server_call_duration_seconds_count{rpc_grpc_status_code=\"0\",rpc_method=\"FetchJWTSVID\",rpc_service=\"SpiffeWorkloadAPI\",rpc_system=\"grpc\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("mayfly_cache_requests_total{cache=\"agent_jwt_svid\",result=\"miss\"} 1"),
        "{text}"
    );
    let (status, _) = common::http_get(addr, "/other").await;
    assert_eq!(status, 404);

    // And the same metrics reach the collector over OTLP/gRPC.
    let mut names = HashSet::new();
    for _ in 0..100 {
        names = collector.received.metric_names();
        if names.contains("mayfly.cache.requests") && names.contains("mayfly.credentials") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(names.contains("rpc.server.call.duration"), "{names:?}");
    assert!(names.contains("mayfly.cache.requests"), "{names:?}");
    assert!(names.contains("mayfly.credentials"), "{names:?}");
    agent.shutdown().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_go_over_otlp_http_protobuf_too() {
    let (collector, _, otlp) = collector();
    let mut http = otlp.clone();
    http.protocol = Protocol::HttpProtobuf;
    http.endpoint = Some(format!("http://{}", collector.http));
    let mut broker = TestBroker::start_configured(move |config| {
        config.telemetry.otlp = http.clone();
    })
    .await;
    broker.enrolled("/http/export", &["db"]).await;
    for _ in 0..100 {
        if collector
            .received
            .requests
            .lock()
            .unwrap()
            .get("/v1/metrics")
            .is_some_and(|n| *n > 0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        collector
            .received
            .requests
            .lock()
            .unwrap()
            .get("/v1/metrics")
            .is_some_and(|n| *n > 0),
        "no OTLP/HTTP metrics export"
    );
    broker.stop().await;
}

/// `mayfly` itself, configured only by the standard variables, exports an
/// admin call's span over OTLP/HTTP with its service name, and flushes at
/// SIGTERM; a protocol it does not speak stops it with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_the_otel_variables_and_exports_over_http() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};
    const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");

    let (collector, _, _) = collector();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{}", collector.http);
    // `mayfly server` on ephemeral ports in `dir`, exporting to the
    // collector's OTLP/HTTP endpoint.
    let server = || {
        let mut command = Command::new(MAYFLY);
        command
            .args(["server", "--grpc-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("MAYFLY_DATA_DIR")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        command
    };
    let refused = server()
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("\"http/json\" is not supported"),
        "{stderr}"
    );

    let mut child = server()
        .env("MAYFLY_LOG", "warn")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_SERVICE_NAME", "broker-under-test")
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        if line.unwrap().starts_with("Stop with") {
            break;
        }
    }
    let status = Command::new(MAYFLY)
        .args(["status"])
        .current_dir(dir.path())
        .env_remove("MAYFLY_DATA_DIR")
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exited = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&exited.stderr);
    assert!(exited.status.success(), "{stderr}");
    assert!(
        stderr.contains("exporting traces and metrics over OTLP (http/protobuf)"),
        "{stderr}"
    );
    let spans = collector.received.spans();
    let status_span = spans
        .iter()
        .find(|(_, span)| span.name == "mayfly.v1.Admin/ServerStatus")
        .unwrap_or_else(|| panic!("no ServerStatus span in {} spans", spans.len()));
    assert!(
        status_span.0.contains("broker-under-test"),
        "{}",
        status_span.0
    );
    assert!(
        collector
            .received
            .requests
            .lock()
            .unwrap()
            .get("/v1/traces")
            .is_some_and(|n| *n > 0)
    );
}
