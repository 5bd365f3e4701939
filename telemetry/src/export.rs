//! The OTLP exporters: spans and metrics (and, in [`crate::logs`], log
//! events) over gRPC (tonic) or HTTP/protobuf
//! (hyper over rustls on aws-lc-rs, the platform's roots for `https://`).
//! Both are built inside the tokio runtime and run on it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};

use crate::config::{OtlpConfig, Protocol};

/// The most of a collector's answer read (it is a small protobuf).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What installing the subscriber or building an exporter failed on.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    /// An exporter could not be built (a bad endpoint, no TLS roots).
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(String),
    /// A global subscriber was already installed.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// The span exporter `config` asks for.
pub(crate) fn spans(
    config: &OtlpConfig,
    endpoint: &str,
) -> Result<opentelemetry_otlp::SpanExporter, TracingError> {
    let built = match config.protocol {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_channel(channel(endpoint, config.timeout)?)
            .with_timeout(config.timeout)
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(signal_url(endpoint, "traces"))
            .with_http_client(HttpExportClient::new(config.timeout)?)
            .with_timeout(config.timeout)
            .build(),
    };
    built.map_err(|error| TracingError::Exporter(error.to_string()))
}

/// The metric exporter `config` asks for (cumulative, as Prometheus).
pub(crate) fn metrics(
    config: &OtlpConfig,
    endpoint: &str,
) -> Result<opentelemetry_otlp::MetricExporter, TracingError> {
    let built = match config.protocol {
        Protocol::Grpc => opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_channel(channel(endpoint, config.timeout)?)
            .with_timeout(config.timeout)
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(signal_url(endpoint, "metrics"))
            .with_http_client(HttpExportClient::new(config.timeout)?)
            .with_timeout(config.timeout)
            .build(),
    };
    built.map_err(|error| TracingError::Exporter(error.to_string()))
}

/// `<base>/v1/<signal>`, as OTLP/HTTP names a signal's path.
pub(crate) fn signal_url(base: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", base.trim_end_matches('/'))
}

/// A lazy gRPC channel to the collector (connected at the first export;
/// TLS with the platform's roots for `https://`).
pub(crate) fn channel(
    endpoint: &str,
    timeout: Duration,
) -> Result<tonic::transport::Channel, TracingError> {
    let bad = |error: tonic::transport::Error| TracingError::Exporter(error.to_string());
    let mut builder = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(bad)?
        .timeout(timeout)
        .connect_timeout(timeout);
    if endpoint.starts_with("https://") {
        builder = builder
            .tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())
            .map_err(bad)?;
    }
    Ok(builder.connect_lazy())
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// OTLP/HTTP's client: hyper over rustls (aws-lc-rs), each request bounded
/// by the export timeout and each answer by [`MAX_RESPONSE_BYTES`].
#[derive(Debug, Clone)]
pub(crate) struct HttpExportClient {
    client: HttpsClient,
    timeout: Duration,
}

impl HttpExportClient {
    pub(crate) fn new(timeout: Duration) -> Result<Self, TracingError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|error| TracingError::Exporter(format!("the platform's TLS roots: {error}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpExportClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for HttpExportClient {
    async fn send_bytes(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, opentelemetry_http::HttpError> {
        let request = request.map(Full::new);
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer from the collector within {:?}", self.timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_paths_follow_the_base_url() {
        assert_eq!(
            signal_url("http://c:4318", "traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            signal_url("https://c/otlp/", "metrics"),
            "https://c/otlp/v1/metrics"
        );
    }
}
