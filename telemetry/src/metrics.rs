//! A process's meter provider: read on demand for `/metrics`, and exported
//! over OTLP on a timer when an endpoint is configured.

use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, MeterProviderBuilder, Pipeline, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::runtime::Tokio;

use crate::config::OtlpConfig;
use crate::export::TracingError;
use crate::subscriber::resource;
use crate::{export, prometheus};

/// A meter provider of its own (tests run several brokers in one process),
/// with the reader `/metrics` collects from.
#[derive(Debug, Clone)]
pub struct Metrics {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
}

impl Metrics {
    /// Read by [`Metrics::render`] only.
    pub fn new() -> Self {
        let (builder, reader) = manual();
        Metrics {
            provider: builder.build(),
            reader,
        }
    }

    /// Read by [`Metrics::render`], and exported over OTLP every
    /// `metric_interval` when `config`'s metrics are on. Must run inside the
    /// tokio runtime then (the exporter runs on it).
    ///
    /// # Errors
    ///
    /// The OTLP exporter cannot be built.
    pub fn with_export(config: &OtlpConfig) -> Result<Self, TracingError> {
        let (mut builder, reader) = manual();
        if let (true, Some(endpoint)) = (config.metrics_on(), &config.endpoint) {
            let exporter = export::metrics(config, endpoint)?;
            builder = builder
                .with_reader(
                    PeriodicReader::builder(exporter, Tokio)
                        .with_interval(config.metric_interval)
                        .build(),
                )
                .with_resource(resource(config));
        }
        Ok(Metrics {
            provider: builder.build(),
            reader,
        })
    }

    /// A meter of this provider.
    pub fn meter(&self, name: &'static str) -> Meter {
        self.provider.meter(name)
    }

    /// Exports what is left (with OTLP) and stops the provider, off the
    /// async workers: the OTLP reader's shutdown blocks until its task on
    /// the runtime answers. Call it before the last clone is dropped; a drop
    /// on a runtime worker would block that worker instead.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = stopped {
            tracing::debug!(%error, "the meter provider did not stop cleanly");
        }
    }

    /// Every metric now, as Prometheus text.
    ///
    /// # Errors
    ///
    /// The SDK's error if the meter provider was shut down.
    pub fn render(&self) -> Result<String, OTelSdkError> {
        let mut collected = ResourceMetrics::default();
        self.reader.collect(&mut collected)?;
        Ok(prometheus::encode(&collected))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A provider builder with the manual reader, and the reader.
fn manual() -> (MeterProviderBuilder, Arc<ManualReader>) {
    let reader = Arc::new(ManualReader::builder().build());
    (
        SdkMeterProvider::builder().with_reader(SharedReader(reader.clone())),
        reader,
    )
}

/// The manual reader, shared between the provider (which owns its reader)
/// and [`Metrics::render`].
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}
