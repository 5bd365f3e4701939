//! Where and how telemetry leaves the process: the OTLP settings, from a
//! config file's values and the environment (`MAYFLY_OTEL_*` before the
//! standard `OTEL_*`).

use std::fmt;
use std::time::Duration;

/// The wire of an OTLP export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OTLP/gRPC (a collector's port 4317).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318, paths `/v1/traces` and
    /// `/v1/metrics`).
    HttpProtobuf,
}

impl Protocol {
    /// Parses the `OTEL_EXPORTER_OTLP_PROTOCOL` spelling: `grpc` or
    /// `http/protobuf`.
    ///
    /// # Errors
    ///
    /// Any other value, `http/json` included (not supported).
    pub fn parse(text: &str) -> Result<Self, OtlpConfigError> {
        match text.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(OtlpConfigError::Protocol(other.to_owned())),
        }
    }

    /// The spelling [`Protocol::parse`] takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The OTLP export of one process. Export is off unless `endpoint` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://127.0.0.1:4317`); `None`: no export.
    pub endpoint: Option<String>,
    /// gRPC or HTTP/protobuf.
    pub protocol: Protocol,
    /// Export spans (with an endpoint).
    pub traces: bool,
    /// Export metrics (with an endpoint).
    pub metrics: bool,
    /// The share of calls without a sampled parent that are traced, from 0
    /// to 1. A caller's `traceparent` decides for its calls (parent-based).
    pub sampling_ratio: f64,
    /// `service.name` of the resource.
    pub service_name: String,
    /// How long one export may take.
    pub timeout: Duration,
    /// How often metrics are exported.
    pub metric_interval: Duration,
}

impl OtlpConfig {
    /// Off, for `service_name`, with OpenTelemetry's defaults otherwise
    /// (every trace sampled, 10 s timeout, metrics every 60 s).
    pub fn off(service_name: &str) -> Self {
        OtlpConfig {
            endpoint: None,
            protocol: Protocol::Grpc,
            traces: true,
            metrics: true,
            sampling_ratio: 1.0,
            service_name: service_name.to_owned(),
            timeout: Duration::from_secs(10),
            metric_interval: Duration::from_secs(60),
        }
    }

    /// Spans are exported: of the calls whose caller sampled them, and of
    /// a share `sampling_ratio` of the others (so at ratio 0, only what a
    /// caller asks for).
    pub fn traces_on(&self) -> bool {
        self.endpoint.is_some() && self.traces
    }

    /// Metrics are exported.
    pub fn metrics_on(&self) -> bool {
        self.endpoint.is_some() && self.metrics
    }

    /// Applies the environment over `self`: each setting from
    /// `MAYFLY_OTEL_<NAME>` if set, else `OTEL_<NAME>`:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `EXPORTER_OTLP_ENDPOINT` | the collector's base URL; empty turns export off |
    /// | `EXPORTER_OTLP_PROTOCOL` | `grpc` or `http/protobuf` |
    /// | `EXPORTER_OTLP_TIMEOUT` | milliseconds per export |
    /// | `TRACES_EXPORTER`, `METRICS_EXPORTER` | `otlp` or `none` |
    /// | `TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, or their `parentbased_` forms (always parent-based) |
    /// | `TRACES_SAMPLER_ARG` | the ratio, 0 to 1 |
    /// | `SERVICE_NAME` | `service.name` |
    /// | `METRIC_EXPORT_INTERVAL` | milliseconds between metric exports |
    ///
    /// `lookup` reads one variable (`std::env::var(..).ok()` in a process).
    ///
    /// # Errors
    ///
    /// A value that does not parse, named with its variable; nothing is
    /// applied then.
    pub fn apply_env(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<OtlpConfig, OtlpConfigError> {
        let get = |name: &str| -> Option<(String, String)> {
            let mayfly = format!("MAYFLY_OTEL_{name}");
            if let Some(value) = lookup(&mayfly) {
                return Some((mayfly, value));
            }
            let standard = format!("OTEL_{name}");
            lookup(&standard).map(|value| (standard, value))
        };
        let mut config = self.clone();
        if let Some((_, endpoint)) = get("EXPORTER_OTLP_ENDPOINT") {
            config.endpoint = Some(endpoint).filter(|e| !e.trim().is_empty());
        }
        if let Some((_, protocol)) = get("EXPORTER_OTLP_PROTOCOL") {
            config.protocol = Protocol::parse(&protocol)?;
        }
        if let Some((variable, millis)) = get("EXPORTER_OTLP_TIMEOUT") {
            config.timeout = millis_of(&variable, &millis)?;
        }
        if let Some((variable, millis)) = get("METRIC_EXPORT_INTERVAL") {
            config.metric_interval = millis_of(&variable, &millis)?;
        }
        if let Some((variable, exporter)) = get("TRACES_EXPORTER") {
            config.traces = exporter_on(&variable, &exporter)?;
        }
        if let Some((variable, exporter)) = get("METRICS_EXPORTER") {
            config.metrics = exporter_on(&variable, &exporter)?;
        }
        let ratio = get("TRACES_SAMPLER_ARG")
            .map(|(variable, arg)| ratio_of(&variable, &arg))
            .transpose()?;
        match get("TRACES_SAMPLER") {
            Some((variable, sampler)) => {
                config.sampling_ratio = match sampler.trim() {
                    "always_on" | "parentbased_always_on" => 1.0,
                    "always_off" | "parentbased_always_off" => 0.0,
                    "traceidratio" | "parentbased_traceidratio" => ratio.unwrap_or(1.0),
                    other => {
                        return Err(OtlpConfigError::Value {
                            variable,
                            value: other.to_owned(),
                            expected: "always_on, always_off, traceidratio or their parentbased_ forms",
                        });
                    }
                }
            }
            None => {
                if let Some(ratio) = ratio {
                    config.sampling_ratio = ratio;
                }
            }
        }
        if let Some((_, name)) = get("SERVICE_NAME")
            && !name.trim().is_empty()
        {
            config.service_name = name.trim().to_owned();
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what a config file or the environment set.
    ///
    /// # Errors
    ///
    /// An endpoint that is not an `http://` or `https://` URL, or a ratio
    /// outside 0 to 1.
    pub fn validate(&self) -> Result<(), OtlpConfigError> {
        if let Some(endpoint) = &self.endpoint {
            let parsed: Result<hyper::Uri, _> = endpoint.parse();
            let valid = parsed.is_ok_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
            });
            if !valid {
                return Err(OtlpConfigError::Endpoint(endpoint.clone()));
            }
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(OtlpConfigError::Ratio(self.sampling_ratio.to_string()));
        }
        Ok(())
    }
}

/// A setting of the OTLP export that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtlpConfigError {
    /// Not `grpc` or `http/protobuf`.
    #[error("OTLP protocol {0:?} is not supported: use \"grpc\" or \"http/protobuf\"")]
    Protocol(String),
    /// Not an `http://` or `https://` URL with a host.
    #[error("OTLP endpoint {0:?} is not an http:// or https:// URL with a host")]
    Endpoint(String),
    /// A sampling ratio outside 0 to 1.
    #[error("trace sampling ratio {0} is not a number from 0 to 1")]
    Ratio(String),
    /// An environment variable's value does not parse.
    #[error("{variable}={value:?}: expected {expected}")]
    Value {
        /// The variable.
        variable: String,
        /// Its value.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
}

fn millis_of(variable: &str, text: &str) -> Result<Duration, OtlpConfigError> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| OtlpConfigError::Value {
            variable: variable.to_owned(),
            value: text.to_owned(),
            expected: "a positive number of milliseconds",
        })
}

fn exporter_on(variable: &str, text: &str) -> Result<bool, OtlpConfigError> {
    match text.trim() {
        "otlp" => Ok(true),
        "none" => Ok(false),
        _ => Err(OtlpConfigError::Value {
            variable: variable.to_owned(),
            value: text.to_owned(),
            expected: "otlp or none",
        }),
    }
}

fn ratio_of(variable: &str, text: &str) -> Result<f64, OtlpConfigError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|ratio| (0.0..=1.0).contains(ratio))
        .ok_or_else(|| OtlpConfigError::Value {
            variable: variable.to_owned(),
            value: text.to_owned(),
            expected: "a ratio from 0 to 1",
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn apply(vars: &[(&str, &str)]) -> Result<OtlpConfig, OtlpConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OtlpConfig::off("mayfly-test").apply_env(|name| vars.get(name).cloned())
    }

    #[test]
    fn export_is_off_until_an_endpoint_is_set() {
        let off = apply(&[]).unwrap();
        assert_eq!(off, OtlpConfig::off("mayfly-test"));
        assert!(!off.traces_on() && !off.metrics_on());
        let on = apply(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")]).unwrap();
        assert!(on.traces_on() && on.metrics_on());
        assert_eq!(on.endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        let empty = apply(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap();
        assert!(!empty.traces_on());
    }

    #[test]
    fn mayfly_variables_come_before_the_standard_ones() {
        let config = apply(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("MAYFLY_OTEL_EXPORTER_OTLP_ENDPOINT", "https://mine:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("MAYFLY_OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "broker-eu-1"),
        ])
        .unwrap();
        assert_eq!(config.endpoint.as_deref(), Some("https://mine:4318"));
        assert_eq!(config.protocol, Protocol::HttpProtobuf);
        assert_eq!(config.service_name, "broker-eu-1");
    }

    #[test]
    fn samplers_and_ratios() {
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")];
        let ratio = |extra: &[(&str, &str)]| {
            let mut vars = base.to_vec();
            vars.extend_from_slice(extra);
            apply(&vars).map(|c| c.sampling_ratio)
        };
        assert_eq!(ratio(&[]), Ok(1.0));
        assert_eq!(ratio(&[("OTEL_TRACES_SAMPLER_ARG", "0.01")]), Ok(0.01));
        assert_eq!(
            ratio(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ]),
            Ok(0.25)
        );
        assert_eq!(
            ratio(&[
                ("OTEL_TRACES_SAMPLER", "always_off"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ]),
            Ok(0.0)
        );
        let off = apply(&[
            base[0],
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ])
        .unwrap();
        assert!(!off.traces_on() && !off.metrics_on());
        for (variable, bad) in [
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_TRACES_SAMPLER_ARG", "-0.1"),
            ("OTEL_TRACES_SAMPLER_ARG", "half"),
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "-5"),
        ] {
            let error = ratio(&[(variable, bad)]).unwrap_err();
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }

    #[test]
    fn endpoints_and_protocols_are_checked() {
        for good in ["http://127.0.0.1:4317", "https://otel.example.org/prefix"] {
            assert!(
                apply(&[("OTEL_EXPORTER_OTLP_ENDPOINT", good)]).is_ok(),
                "{good}"
            );
        }
        for bad in ["127.0.0.1:4317", "ftp://x", "http://", "not a url"] {
            assert_eq!(
                apply(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]),
                Err(OtlpConfigError::Endpoint(bad.to_owned())),
                "{bad}"
            );
        }
        assert_eq!(Protocol::parse("http/protobuf"), Ok(Protocol::HttpProtobuf));
        assert_eq!(
            Protocol::parse("http/json"),
            Err(OtlpConfigError::Protocol("http/json".to_owned()))
        );
    }
}
