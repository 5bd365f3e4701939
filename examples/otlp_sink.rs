//! An OTLP collector that decodes what it receives, counts it and drops it:
//! the answering end of the telemetry cost benchmark (BENCHMARKS.md), for a
//! machine without an OpenTelemetry Collector.
//!
//! ```sh
//! cargo run --release --example otlp_sink -- 127.0.0.1:4317 127.0.0.1:4318
//! # then, in another shell:
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 mayfly server     # gRPC
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
//!   OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf mayfly server            # HTTP
//! ```
//!
//! Every 5 s with news it prints the requests, spans and metric data points
//! received so far.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
use prost::Message as _;

/// What arrived so far.
#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    spans: AtomicU64,
    points: AtomicU64,
}

#[derive(Debug, Clone, Default)]
struct Sink(Arc<Counts>);

impl Sink {
    fn spans(&self, request: &ExportTraceServiceRequest) {
        let spans = request
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len() as u64)
            .sum();
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.spans.fetch_add(spans, Ordering::Relaxed);
    }

    fn metrics(&self, request: &ExportMetricsServiceRequest) {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let points = request
            .resource_metrics
            .iter()
            .flat_map(|resource| &resource.scope_metrics)
            .flat_map(|scope| &scope.metrics)
            .map(|metric| match &metric.data {
                Some(Data::Sum(sum)) => sum.data_points.len(),
                Some(Data::Gauge(gauge)) => gauge.data_points.len(),
                Some(Data::Histogram(histogram)) => histogram.data_points.len(),
                Some(_) | None => 0,
            } as u64)
            .sum();
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.points.fetch_add(points, Ordering::Relaxed);
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.spans(request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics(request.get_ref());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn address(argument: Option<String>, default: &str) -> Result<SocketAddr, String> {
    let text = argument.unwrap_or_else(|| default.to_owned());
    text.parse()
        .map_err(|error| format!("{text:?} is not an address (host:port): {error}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let grpc = address(arguments.next(), "127.0.0.1:4317")?;
    let http = address(arguments.next(), "127.0.0.1:4318")?;
    let sink = Sink::default();

    let grpc_listener = tokio::net::TcpListener::bind(grpc).await?;
    let http_listener = tokio::net::TcpListener::bind(http).await?;
    eprintln!("OTLP sink: gRPC on {grpc}, HTTP/protobuf on {http}");

    let service = sink.clone();
    let grpc_server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(service.clone()))
        .add_service(MetricsServiceServer::new(service))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
            grpc_listener,
        ));

    let (traces, metrics) = (sink.clone(), sink.clone());
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        traces.spans(&request);
                        Ok(ExportTraceServiceResponse::default().encode_to_vec())
                    }
                    Err(_) => Err(axum::http::StatusCode::BAD_REQUEST),
                }
            }),
        )
        .route(
            "/v1/metrics",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                match ExportMetricsServiceRequest::decode(body) {
                    Ok(request) => {
                        metrics.metrics(&request);
                        Ok(ExportMetricsServiceResponse::default().encode_to_vec())
                    }
                    Err(_) => Err(axum::http::StatusCode::BAD_REQUEST),
                }
            }),
        );
    let http_server = axum::serve(http_listener, app).into_future();

    let report = async {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let requests = sink.0.requests.load(Ordering::Relaxed);
            if requests != last {
                last = requests;
                eprintln!(
                    "{requests} requests, {} spans, {} metric points",
                    sink.0.spans.load(Ordering::Relaxed),
                    sink.0.points.load(Ordering::Relaxed)
                );
            }
        }
    };
    tokio::select! {
        served = grpc_server => served?,
        served = http_server => served?,
        () = report => {}
    }
    Ok(())
}
