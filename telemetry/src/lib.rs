//! Mayfly's telemetry plumbing, shared by the broker and the agent.
//!
//! - [`Metrics`]: an OpenTelemetry meter provider with a manual reader that
//!   `/metrics` collects as Prometheus text ([`prometheus::encode`]) and,
//!   when an OTLP endpoint is configured, a periodic OTLP export.
//! - [`RpcLayer`]: a tower layer on a gRPC server that records
//!   `rpc.server.call.duration` and, when traces are on, opens a span per
//!   call that continues the caller's W3C `traceparent`.
//! - [`Tracing`]: the global `tracing` subscriber: log lines to standard
//!   error, and sampled spans exported over OTLP (gRPC or HTTP/protobuf).
//! - [`propagation`]: `traceparent` in and out of gRPC metadata, so that a
//!   trace follows a request from the workload through the agent to the
//!   broker.
//! - [`OtlpLogs`]: log events (the broker's alerts) exported one record
//!   per request to the same collector, each export's fate returned.
//! - [`stage`]: a child span of the current RPC span for one stage of a hot
//!   path (attest, policy, sign, audit commit, store), and nothing at all
//!   when the request is not sampled.
//!
//! Everything here is off the request path's I/O: recording a measurement
//! is an atomic add, a span of a sampled call goes to a bounded queue that
//! drops when the collector is away, and an unsampled call creates no span.
//! Span attributes name RPCs, outcomes, attestors, entries, SPIFFE IDs,
//! audiences and replicas; never a token, a key, a join token or evidence.

mod config;
mod endpoint;
mod export;
pub mod logs;
mod metrics;
pub mod prometheus;
pub mod propagation;
mod rpc;
mod subscriber;

pub use config::{OtlpConfig, OtlpConfigError, Protocol};
pub use endpoint::serve_metrics;
pub use export::TracingError;
pub use logs::{LogEvent, LogExportError, LogValue, OtlpLogs, Severity};
pub use metrics::Metrics;
pub use rpc::{OTHER_METHOD, RpcLayer, RpcService, RpcServiceLayer, TimedBody};
pub use subscriber::{LOG_ENV, Sampling, Tracing};

/// The `tracing` target of every span this crate and its users open; the
/// OTLP layer exports spans of this target only (log lines go to standard
/// error whatever their target).
pub const SPAN_TARGET: &str = "mayfly::trace";

/// A child span of the current span, for one stage of a hot path, or
/// [`tracing::Span::none`] when there is no current span (the call was not
/// sampled, or traces are off), so that an unsampled request pays one
/// thread-local look-up per stage and nothing else.
///
/// ```
/// let span = mayfly_telemetry::stage("mint.sign");
/// let _entered = span.enter();
/// ```
pub fn stage(name: &'static str) -> tracing::Span {
    let current = tracing::Span::current();
    if current.is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(target: "mayfly::trace", parent: &current, "stage", otel.name = name)
}

/// Sets `key` to `value` on `span` when it is recorded (a sampled call);
/// `value` is computed only then.
pub fn annotate<V: Into<opentelemetry::Value>>(
    span: &tracing::Span,
    key: &'static str,
    value: impl FnOnce() -> V,
) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !span.is_none() {
        span.set_attribute(key, value());
    }
}
