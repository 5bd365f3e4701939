//! The agent's metrics and spans: the Workload API's calls
//! (`rpc.server.call.duration`, a span per sampled call continuing the
//! workload's `traceparent`), JWT-SVID cache look-ups, and the trace
//! context the agent passes on to the broker.

use std::net::SocketAddr;

use mayfly_telemetry::{Metrics, OtlpConfig, RpcService};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;

/// The agent's `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "mayfly-agent";

/// `SpiffeWorkloadAPI` and its methods, as in the SPIFFE
/// `workloadapi.proto` (a test keeps the two the same).
pub static WORKLOAD_API: RpcService = RpcService {
    name: "SpiffeWorkloadAPI",
    methods: &[
        "FetchX509SVID",
        "FetchX509Bundles",
        "FetchJWTSVID",
        "FetchJWTBundles",
        "ValidateJWTSVID",
        "FetchWITSVID",
        "FetchWITBundles",
    ],
};

/// What the agent exports about itself. With neither a listener nor an
/// OTLP endpoint the Workload API carries no telemetry layer at all.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Serve `/metrics` (Prometheus text) on this TCP address.
    pub metrics_listen: Option<SocketAddr>,
    /// Traces and metrics over OTLP; off without an endpoint.
    pub otlp: OtlpConfig,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            metrics_listen: None,
            otlp: OtlpConfig::off(SERVICE_NAME),
        }
    }
}

impl TelemetryConfig {
    /// Whether anything reads the agent's telemetry.
    pub(crate) fn enabled(&self) -> bool {
        self.metrics_listen.is_some() || self.otlp.traces_on() || self.otlp.metrics_on()
    }
}

/// The agent's instruments.
#[derive(Debug, Clone)]
pub(crate) struct AgentMetrics {
    cache: Counter<u64>,
}

impl AgentMetrics {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        AgentMetrics {
            cache: metrics
                .meter("mayfly-agent")
                .u64_counter("mayfly.cache.requests")
                .with_description("Look-ups of the agent's JWT-SVID cache, by result.")
                .with_unit("{request}")
                .build(),
        }
    }

    /// The JWT-SVID cache had a token to hand out, or not.
    pub(crate) fn jwt_cache(&self, hit: bool) {
        self.cache.add(
            1,
            &[
                KeyValue::new("cache", "agent_jwt_svid"),
                KeyValue::new("result", if hit { "hit" } else { "miss" }),
            ],
        );
    }
}

/// `message` as a request to the broker that carries the current span's
/// trace context (nothing when the call is not sampled).
pub(crate) fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    mayfly_telemetry::propagation::inject_current(request.metadata_mut());
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_list_is_the_workload_api_s() {
        let proto = include_str!("../../proto/spiffe/workloadapi.proto");
        let in_proto: Vec<&str> = proto
            .lines()
            .filter_map(|line| line.trim().strip_prefix("rpc "))
            .filter_map(|rest| rest.split('(').next())
            .map(str::trim)
            .collect();
        assert_eq!(in_proto, WORKLOAD_API.methods);
    }

    #[test]
    fn telemetry_is_off_by_default() {
        assert!(!TelemetryConfig::default().enabled());
        let listening = TelemetryConfig {
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..TelemetryConfig::default()
        };
        assert!(listening.enabled());
    }
}
