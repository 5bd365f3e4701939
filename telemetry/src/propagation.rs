//! W3C Trace Context (`traceparent`, `tracestate`) in and out of HTTP/2
//! headers and gRPC metadata.

use hyper::header::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The caller's trace context in `headers`; an empty context when there is
/// none or it does not parse (a bad `traceparent` starts a new trace, as
/// the W3C recommendation says).
pub fn extract(headers: &HeaderMap) -> Context {
    if !headers.contains_key("traceparent") {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// Puts `span`'s trace context into `metadata`, so that the callee's span
/// is its child; nothing when `span` is not recorded (not sampled, or
/// traces off).
pub fn inject(span: &tracing::Span, metadata: &mut MetadataMap) {
    if span.is_none() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut Metadata(metadata));
}

/// [`inject`] with the current span.
pub fn inject_current(metadata: &mut MetadataMap) {
    inject(&tracing::Span::current(), metadata);
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

struct Metadata<'a>(&'a mut MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt as _;

    use super::*;

    #[test]
    fn a_traceparent_is_read_and_a_bad_one_ignored() {
        let mut headers = HeaderMap::new();
        assert!(!extract(&headers).span().span_context().is_valid());
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let context = extract(&headers);
        let span = context.span();
        let remote = span.span_context();
        assert!(remote.is_valid() && remote.is_sampled() && remote.is_remote());
        assert_eq!(
            remote.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "not a traceparent",
        ] {
            headers.insert("traceparent", bad.parse().unwrap());
            assert!(!extract(&headers).span().span_context().is_valid(), "{bad}");
        }
    }

    #[test]
    fn a_recorded_span_s_context_is_injected_and_an_unrecorded_one_s_is_not() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        let mut metadata = MetadataMap::new();
        inject(&tracing::Span::none(), &mut metadata);
        assert!(metadata.is_empty());

        // Positive control: a span recorded by the OpenTelemetry layer
        // travels as a traceparent with its trace id.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("call");
            inject(&span, &mut metadata);
            let sent = metadata
                .get("traceparent")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let trace_id = span.context().span().span_context().trace_id().to_string();
            assert!(
                sent.starts_with(&format!("00-{trace_id}-")) && sent.ends_with("-01"),
                "{sent}"
            );
        });
    }
}
