//! OTLP log events: one OpenTelemetry log record per call, exported at
//! once to the collector of the process's OTLP settings (gRPC or
//! HTTP/protobuf), with the collector's answer returned to the caller.
//!
//! This is not a log pipeline (log lines go to standard error): it is for
//! events whose delivery is itself evidence, such as the broker's alerts,
//! where the caller audits each event's fate and tries again on its own
//! terms. So there is no batching processor and no global logger: each
//! [`OtlpLogs::export`] is one request carrying one record.
//!
//! Invariants, and why:
//! - **Each export is bounded in time** (the OTLP timeout, for the
//!   connection and the exchange), and an HTTP answer in size, so a
//!   collector that hangs cannot hold its caller forever.
//! - **The caller learns whether another try may help**
//!   ([`LogExportError::is_transient`]), as the OTLP specification says:
//!   no answer, gRPC `UNAVAILABLE` and the like, HTTP 429, 502, 503 and
//!   504 may pass later; anything else, or records the collector rejects
//!   (a partial success), will not.
//! - **Only what the caller gives is sent**: the record's attributes are
//!   the caller's, plus the resource's `service.name`. Nothing of the
//!   process's environment is added.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use crate::config::{OtlpConfig, Protocol};
use crate::export::{self, HttpExportClient, TracingError};

/// The instrumentation scope of the records.
const SCOPE: &str = "mayfly";

/// How bad an event is: the OpenTelemetry severities an event of ours uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `INFO` (9).
    Info,
    /// `WARN` (13).
    Warn,
    /// `ERROR` (17).
    Error,
}

impl Severity {
    fn number(self) -> SeverityNumber {
        match self {
            Severity::Info => SeverityNumber::Info,
            Severity::Warn => SeverityNumber::Warn,
            Severity::Error => SeverityNumber::Error,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
        }
    }
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
}

/// One log event, as the caller describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// The record's `event_name` (`mayfly.alert`).
    pub event_name: &'static str,
    /// When it happened, in Unix seconds.
    pub time_unix_seconds: i64,
    /// When it was handed over for export, in Unix seconds.
    pub observed_unix_seconds: i64,
    /// The record's severity.
    pub severity: Severity,
    /// The record's body: one line for people.
    pub body: String,
    /// The record's attributes, in order.
    pub attributes: Vec<(&'static str, LogValue)>,
}

/// Why one export did not deliver its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogExportError {
    /// The collector answered an OTLP/HTTP request with a status other than
    /// 2xx.
    #[error("the collector answered HTTP status {0}")]
    HttpStatus(u16),
    /// An OTLP/gRPC request ended with an error status (from the collector,
    /// or from the channel when it cannot reach it: `Unavailable`).
    #[error("gRPC status {code:?}: {message}")]
    GrpcStatus {
        /// The status code.
        code: tonic::Code,
        /// The collector's message.
        message: String,
    },
    /// No answer: no connection, a TLS failure, a broken exchange, a
    /// timeout.
    #[error("no answer from the collector: {0}")]
    Unreachable(String),
    /// The collector took the request but rejected the record (an OTLP
    /// partial success).
    #[error("the collector rejected the record: {0}")]
    Rejected(String),
    /// The collector's answer is not an OTLP response.
    #[error("the collector's answer is not an OTLP logs response: {0}")]
    BadAnswer(String),
}

impl LogExportError {
    /// Whether another try may succeed, as the OTLP specification lists the
    /// retryable answers.
    pub fn is_transient(&self) -> bool {
        match self {
            LogExportError::HttpStatus(status) => matches!(status, 429 | 502 | 503 | 504),
            LogExportError::GrpcStatus { code, .. } => matches!(
                code,
                tonic::Code::Cancelled
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::OutOfRange
                    | tonic::Code::Unavailable
                    | tonic::Code::DataLoss
            ),
            LogExportError::Unreachable(_) => true,
            LogExportError::Rejected(_) | LogExportError::BadAnswer(_) => false,
        }
    }
}

enum Wire {
    Grpc(LogsServiceClient<tonic::transport::Channel>),
    Http(HttpExportClient),
}

/// The client that exports log events to the OTLP collector.
pub struct OtlpLogs {
    wire: Wire,
    /// Where records go: the collector's base URL (gRPC) or its
    /// `/v1/logs` URL (HTTP).
    url: String,
    service_name: String,
    timeout: Duration,
}

impl fmt::Debug for OtlpLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpLogs")
            .field("url", &self.url)
            .field("service_name", &self.service_name)
            .finish_non_exhaustive()
    }
}

impl OtlpLogs {
    /// A client for `config`'s collector (connected at the first export).
    /// Built inside the tokio runtime it will run on.
    ///
    /// # Errors
    ///
    /// [`TracingError::Exporter`] when `config` has no endpoint, or the
    /// endpoint or the TLS roots cannot be used.
    pub fn new(config: &OtlpConfig) -> Result<Self, TracingError> {
        let endpoint = config.endpoint.as_deref().ok_or_else(|| {
            TracingError::Exporter("no OTLP endpoint is configured for log events".to_owned())
        })?;
        let (wire, url) = match config.protocol {
            Protocol::Grpc => (
                Wire::Grpc(LogsServiceClient::new(export::channel(
                    endpoint,
                    config.timeout,
                )?)),
                endpoint.to_owned(),
            ),
            Protocol::HttpProtobuf => (
                Wire::Http(HttpExportClient::new(config.timeout)?),
                export::signal_url(endpoint, "logs"),
            ),
        };
        Ok(OtlpLogs {
            wire,
            url,
            service_name: config.service_name.clone(),
            timeout: config.timeout,
        })
    }

    /// Where records go: the collector's URL (with `/v1/logs` over HTTP).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Exports `event` as one log record, in one request.
    ///
    /// # Errors
    ///
    /// [`LogExportError`] saying why the collector did not take it.
    pub async fn export(&self, event: &LogEvent) -> Result<(), LogExportError> {
        let request = self.request(event);
        let exchange = async {
            match &self.wire {
                Wire::Grpc(client) => {
                    let mut client = client.clone();
                    client
                        .export(request)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|status| LogExportError::GrpcStatus {
                            code: status.code(),
                            message: status.message().to_owned(),
                        })
                }
                Wire::Http(client) => {
                    let http = hyper::Request::post(&self.url)
                        .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
                        .body(Bytes::from(request.encode_to_vec()))
                        .map_err(|e| LogExportError::Unreachable(e.to_string()))?;
                    let response = opentelemetry_http::HttpClient::send_bytes(client, http)
                        .await
                        .map_err(|e| LogExportError::Unreachable(e.to_string()))?;
                    let status = response.status();
                    if !status.is_success() {
                        return Err(LogExportError::HttpStatus(status.as_u16()));
                    }
                    ExportLogsServiceResponse::decode(response.into_body())
                        .map_err(|e| LogExportError::BadAnswer(e.to_string()))
                }
            }
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                LogExportError::Unreachable(format!("no answer within {:?}", self.timeout))
            })??;
        match answer.partial_success {
            Some(partial) if partial.rejected_log_records > 0 => Err(LogExportError::Rejected(
                if partial.error_message.is_empty() {
                    "no reason given".to_owned()
                } else {
                    partial.error_message
                },
            )),
            _ => Ok(()),
        }
    }

    /// The OTLP request carrying `event`.
    fn request(&self, event: &LogEvent) -> ExportLogsServiceRequest {
        let nanos = |seconds: i64| u64::try_from(seconds).unwrap_or(0) * 1_000_000_000;
        let record = LogRecord {
            time_unix_nano: nanos(event.time_unix_seconds),
            observed_time_unix_nano: nanos(event.observed_unix_seconds),
            severity_number: event.severity.number() as i32,
            severity_text: event.severity.text().to_owned(),
            body: Some(string(&event.body)),
            attributes: event
                .attributes
                .iter()
                .map(|(key, value)| KeyValue {
                    key: (*key).to_owned(),
                    value: Some(match value {
                        LogValue::Str(text) => string(text),
                        LogValue::Int(n) => AnyValue {
                            value: Some(any_value::Value::IntValue(*n)),
                        },
                    }),
                })
                .collect(),
            event_name: event.event_name.to_owned(),
            ..LogRecord::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".to_owned(),
                        value: Some(string(&self.service_name)),
                    }],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: vec![record],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }
}

fn string(text: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_answers_the_specification_lists_are_tried_again() {
        for status in [429, 502, 503, 504] {
            assert!(
                LogExportError::HttpStatus(status).is_transient(),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 413, 500, 501] {
            assert!(
                !LogExportError::HttpStatus(status).is_transient(),
                "{status}"
            );
        }
        let grpc = |code| LogExportError::GrpcStatus {
            code,
            message: String::new(),
        };
        assert!(grpc(tonic::Code::Unavailable).is_transient());
        assert!(grpc(tonic::Code::DeadlineExceeded).is_transient());
        assert!(!grpc(tonic::Code::InvalidArgument).is_transient());
        assert!(!grpc(tonic::Code::Unimplemented).is_transient());
        assert!(!grpc(tonic::Code::PermissionDenied).is_transient());
        assert!(LogExportError::Unreachable("refused".into()).is_transient());
        assert!(!LogExportError::Rejected("too big".into()).is_transient());
    }

    #[tokio::test]
    async fn a_record_carries_the_event_and_the_service_name_only() {
        let mut config = OtlpConfig::off("mayfly-test");
        assert!(OtlpLogs::new(&config).is_err(), "no endpoint, no client");
        config.endpoint = Some("http://127.0.0.1:4318/".to_owned());
        config.protocol = Protocol::HttpProtobuf;
        let logs = OtlpLogs::new(&config).unwrap();
        assert_eq!(logs.url(), "http://127.0.0.1:4318/v1/logs");
        let event = LogEvent {
            event_name: "mayfly.alert",
            time_unix_seconds: 1_800_000_000,
            observed_unix_seconds: 1_800_000_001,
            severity: Severity::Warn,
            body: "test alert".to_owned(),
            attributes: vec![
                ("mayfly.alert.kind", LogValue::Str("test".to_owned())),
                ("mayfly.alert.generated_at", LogValue::Int(1_800_000_000)),
            ],
        };
        let request = logs.request(&event);
        let resource = &request.resource_logs[0];
        let service = &resource.resource.as_ref().unwrap().attributes;
        assert_eq!(service.len(), 1);
        assert_eq!(service[0].key, "service.name");
        let record = &resource.scope_logs[0].log_records[0];
        assert_eq!(record.event_name, "mayfly.alert");
        assert_eq!(record.severity_number, 13);
        assert_eq!(record.severity_text, "WARN");
        assert_eq!(record.time_unix_nano, 1_800_000_000_000_000_000);
        let keys: Vec<&str> = record.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["mayfly.alert.kind", "mayfly.alert.generated_at"]);
    }
}
