//! A process's meter provider: one manual reader, read on demand for
//! `/metrics` and, when an endpoint is configured, by an export task on a
//! timer. One reader means one aggregation per measurement whichever way the
//! numbers leave (a second, periodic reader would double the work of every
//! counter and histogram on the request path).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, MeterProviderBuilder, Pipeline, SdkMeterProvider, Temporality,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
    /// The OTLP export task, when an endpoint is configured.
    export: Option<Arc<Exporting>>,
}

/// The running export task and the signal that stops it.
#[derive(Debug)]
struct Exporting {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Metrics {
    /// Read by [`Metrics::render`] only.
    pub fn new() -> Self {
        let (builder, reader) = manual();
        Metrics {
            provider: builder.build(),
            reader,
            export: None,
        }
    }

    /// Read by [`Metrics::render`], and exported over OTLP every
    /// `metric_interval` when `config`'s metrics are on. Must run inside the
    /// tokio runtime then (the export task runs on it).
    ///
    /// # Errors
    ///
    /// The OTLP exporter cannot be built.
    pub fn with_export(config: &OtlpConfig) -> Result<Self, TracingError> {
        let (builder, reader) = manual();
        let (true, Some(endpoint)) = (config.metrics_on(), &config.endpoint) else {
            return Ok(Metrics {
                provider: builder.build(),
                reader,
                export: None,
            });
        };
        let exporter = export::metrics(config, endpoint)?;
        let provider = builder.with_resource(resource(config)).build();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(export_every(
            exporter,
            Arc::clone(&reader),
            config.metric_interval,
            stopped,
        ));
        Ok(Metrics {
            provider,
            reader,
            export: Some(Arc::new(Exporting {
                stop,
                task: Mutex::new(Some(task)),
            })),
        })
    }

    /// A meter of this provider.
    pub fn meter(&self, name: &'static str) -> Meter {
        self.provider.meter(name)
    }

    /// Exports what is left (with OTLP) and stops the provider. Call it
    /// before the last clone is dropped; without it the export task stops
    /// with the runtime, and the numbers since its last export stay unsent.
    pub async fn shutdown(&self) {
        if let Some(exporting) = &self.export {
            exporting.stop.send_replace(true);
            let task = exporting
                .task
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(task) = task
                && let Err(error) = task.await
            {
                tracing::debug!(%error, "the metric export task did not stop cleanly");
            }
        }
        if let Err(error) = self.provider.shutdown() {
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

/// Every `interval`, and once more when told to stop, collects from `reader`
/// and hands the numbers to `exporter`. An export is bounded by the
/// exporter's own timeout; one that fails is dropped (the next carries the
/// cumulative totals), so a collector that is away costs nothing that grows.
async fn export_every(
    exporter: opentelemetry_otlp::MetricExporter,
    reader: Arc<ManualReader>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticks.tick() => false,
            // A dropped sender stops the task too.
            _ = stop.changed() => true,
        };
        let mut collected = ResourceMetrics::default();
        match reader.collect(&mut collected) {
            Ok(()) => {
                if let Err(error) = exporter.export(&collected).await {
                    tracing::debug!(%error, "metrics not exported");
                }
            }
            Err(error) => tracing::debug!(%error, "metrics not collected for export"),
        }
        if stopping {
            if let Err(error) = exporter.shutdown() {
                tracing::debug!(%error, "the metric exporter did not stop cleanly");
            }
            return;
        }
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
