//! The process's `tracing` subscriber: log lines to standard error under
//! `MAYFLY_LOG`, and, with an OTLP endpoint, the spans of sampled calls
//! exported in batches.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::SPAN_TARGET;
use crate::config::OtlpConfig;
use crate::export::{self, TracingError};

/// The variable that filters log lines (`info` when unset).
pub const LOG_ENV: &str = "MAYFLY_LOG";

/// Which calls without a sampled parent are traced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    ratio: f64,
}

impl Sampling {
    /// Traces a share `ratio` (0 to 1) of the calls that come without a
    /// parent's decision.
    pub fn ratio(ratio: f64) -> Self {
        Sampling {
            ratio: ratio.clamp(0.0, 1.0),
        }
    }

    /// Whether a call whose caller did not decide is traced.
    pub(crate) fn roll(self) -> bool {
        self.ratio >= 1.0 || (self.ratio > 0.0 && rand::random::<f64>() < self.ratio)
    }
}

/// The installed subscriber, and the tracer provider to flush at exit.
#[derive(Debug)]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
    sampling: Option<Sampling>,
}

impl Tracing {
    /// Installs the global subscriber: log lines (filtered by `MAYFLY_LOG`,
    /// default `info`) to standard error; with `config`'s traces on, the
    /// spans of [`SPAN_TARGET`] exported over OTLP. Must run inside the
    /// tokio runtime when traces are on (the exporter runs on it).
    ///
    /// # Errors
    ///
    /// The exporter cannot be built, or a subscriber is already installed.
    pub fn install(config: &OtlpConfig) -> Result<Tracing, TracingError> {
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter());
        let (provider, sampling) = match (config.traces_on(), &config.endpoint) {
            (true, Some(endpoint)) => {
                let exporter = export::spans(config, endpoint)?;
                let provider = SdkTracerProvider::builder()
                    .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
                    // The RPC layer samples at the edge (parent-based, then
                    // the ratio); a span it opens is always recorded.
                    .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
                    .with_resource(resource(config))
                    .build();
                (Some(provider), Some(Sampling::ratio(config.sampling_ratio)))
            }
            _ => (None, None),
        };
        let spans = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("mayfly"))
                .with_location(false)
                .with_threads(false)
                .with_filter(Targets::new().with_target(SPAN_TARGET, tracing::Level::INFO))
        });
        tracing_subscriber::registry()
            .with(logs)
            .with(spans)
            .try_init()
            .map_err(|_| TracingError::AlreadyInstalled)?;
        Ok(Tracing { provider, sampling })
    }

    /// Log lines only, for the commands that serve nothing.
    pub fn logs_only() {
        // Only fails if one is installed already, which then stays.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(log_filter())
            .with_writer(std::io::stderr)
            .try_init();
    }

    /// The edge sampling of the RPC layers, `None` when traces are off.
    pub fn sampling(&self) -> Option<Sampling> {
        self.sampling
    }

    /// Exports the spans queued now (tests, and before a planned stop).
    pub async fn flush(&self) {
        if let Some(provider) = self.provider.clone() {
            let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
            if let Ok(Err(error)) = flushed {
                tracing::debug!(%error, "the trace exporter did not flush");
            }
        }
    }

    /// Exports the spans still queued and stops the exporter; waits at most
    /// the export timeout.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(error)) = stopped {
                tracing::warn!(%error, "the trace exporter did not stop cleanly");
            }
        }
    }
}

/// `MAYFLY_LOG`, else `info`; never the spans of [`SPAN_TARGET`], which
/// are for the exporter (log lines would only repeat them).
fn log_filter() -> EnvFilter {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    match format!("{SPAN_TARGET}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// `service.name` and `service.version`.
pub(crate) fn resource(config: &OtlpConfig) -> Resource {
    Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}
