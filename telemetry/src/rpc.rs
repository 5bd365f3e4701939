//! The duration of every RPC, as the OpenTelemetry RPC conventions name it
//! (`rpc.server.call.duration`, seconds, by `rpc.system`, `rpc.service`,
//! `rpc.method` and `rpc.grpc.status_code`).
//!
//! A tower layer on a gRPC server: the clock starts when the service is
//! called and stops when the response body ends (a server stream lasts as
//! long as it streams) or is dropped. The status is the `grpc-status` of a
//! trailers-only response, or of the trailers; a body dropped before its
//! trailers (a reset stream, a client that went away) counts as
//! `CANCELLED` (1). Only the services' own methods are labels; any other
//! path is `_OTHER`, so a client cannot grow the label set.
//!
//! With traces on, the same layer opens the call's span (OpenTelemetry's
//! `{service}/{method}`, kind server, the `rpc.*` attributes and the gRPC
//! status code): a child of the caller's W3C `traceparent` when the caller
//! sampled it, a new trace for a configured share of the calls that come
//! without one, and no span at all otherwise. The handler runs inside it,
//! so [`crate::stage`] spans hang under it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::{Body, Frame, SizeHint};
use hyper::header::HeaderMap;
use hyper::{Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::trace::TraceContextExt as _;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::propagation;
use crate::subscriber::Sampling;

/// A gRPC service whose methods are labels: any other path is
/// [`OTHER_METHOD`], so a client cannot grow the label set.
#[derive(Debug)]
pub struct RpcService {
    /// The full service name (`mayfly.v1.Broker`).
    pub name: &'static str,
    /// Its methods, as in its proto.
    pub methods: &'static [&'static str],
}

impl RpcService {
    /// The label of `path` (`/mayfly.v1.Broker/MintJwtSvid`): the method,
    /// or [`OTHER_METHOD`].
    pub fn method_of(&self, path: &str) -> &'static str {
        path.strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .filter(|(service, _)| *service == self.name)
            .and_then(|(_, method)| self.methods.iter().find(|m| **m == method))
            .copied()
            .unwrap_or(OTHER_METHOD)
    }
}

/// What a path that is not one of the service's methods is counted as.
pub const OTHER_METHOD: &str = "_OTHER";

/// `grpc-status` of a call that ended without one.
const CANCELLED: u8 = 1;
/// `grpc-status` of a response without one anywhere (not gRPC's way).
const UNKNOWN: u8 = 2;

/// The layer: wrap a gRPC service in it.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    service: &'static RpcService,
    duration: Histogram<f64>,
    sampling: Option<Sampling>,
    /// Set on every span (the broker's replica id, say).
    attributes: std::sync::Arc<[KeyValue]>,
}

impl RpcLayer {
    /// Records the calls of `service` into `meter`'s
    /// `rpc.server.call.duration`; with `sampling`, opens a span for each
    /// sampled call.
    pub fn new(service: &'static RpcService, meter: &Meter, sampling: Option<Sampling>) -> Self {
        RpcLayer {
            service,
            duration: meter
                .f64_histogram("rpc.server.call.duration")
                .with_description(
                    "Time from an RPC's call to the end of its response, by service, method and gRPC status code.",
                )
                .with_unit("s")
                .with_boundaries(vec![
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .build(),
            sampling,
            attributes: std::sync::Arc::new([]),
        }
    }

    /// Puts `attributes` on every span this layer opens (not on the metric:
    /// its labels stay a bounded set).
    #[must_use]
    pub fn with_span_attributes(mut self, attributes: Vec<KeyValue>) -> Self {
        self.attributes = attributes.into();
        self
    }

    /// The span of a call to `method`: a child of the caller's
    /// `traceparent` when it has one and sampled it, a new trace for a
    /// share of the calls without one, and none otherwise.
    fn span(&self, method: &'static str, headers: &HeaderMap) -> tracing::Span {
        let Some(sampling) = self.sampling else {
            return tracing::Span::none();
        };
        let parent = propagation::extract(headers);
        let remote = parent.span().span_context().clone();
        let sampled = if remote.is_valid() {
            remote.is_sampled()
        } else {
            sampling.roll()
        };
        if !sampled {
            return tracing::Span::none();
        }
        let span = tracing::info_span!(
            target: "mayfly::trace",
            "rpc",
            otel.name = %format_args!("{}/{method}", self.service.name),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = self.service.name,
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        if remote.is_valid() {
            // Fails only when the span is disabled, which it is not.
            let _ = span.set_parent(parent);
        }
        for attribute in self.attributes.iter() {
            span.set_attribute(attribute.key.clone(), attribute.value.clone());
        }
        span
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcServiceLayer<S>;

    fn layer(&self, inner: S) -> RpcServiceLayer<S> {
        RpcServiceLayer {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RpcLayer`].
#[derive(Debug, Clone)]
pub struct RpcServiceLayer<S> {
    inner: S,
    layer: RpcLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, RequestBody, ResponseBody> tower::Service<Request<RequestBody>> for RpcServiceLayer<S>
where
    S: tower::Service<Request<RequestBody>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
    ResponseBody: Unpin,
{
    type Response = Response<TimedBody<ResponseBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let method = self.layer.service.method_of(request.uri().path());
        let span = self.layer.span(method, request.headers());
        let call = Call {
            service: self.layer.service.name,
            method,
            started: Instant::now(),
            status: None,
            duration: self.layer.duration.clone(),
            span: span.clone(),
        };
        let response = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                // A call that fails before a response (or is dropped) is
                // recorded by `call`'s drop, as cancelled.
                let response = response.await?;
                let mut call = call;
                call.status = grpc_status(response.headers());
                Ok(response.map(|inner| TimedBody {
                    inner,
                    call: Some(call),
                }))
            }
            .instrument(span),
        )
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u8>().ok())
        .filter(|code| *code <= 16)
}

/// One call being timed; recorded once, when dropped.
#[derive(Debug)]
struct Call {
    service: &'static str,
    method: &'static str,
    started: Instant,
    status: Option<u8>,
    duration: Histogram<f64>,
    span: tracing::Span,
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.status.unwrap_or(CANCELLED);
        self.duration.record(
            self.started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", self.service),
                KeyValue::new("rpc.method", self.method),
                KeyValue::new("rpc.grpc.status_code", i64::from(code)),
            ],
        );
        if !self.span.is_none() {
            self.span.record("rpc.grpc.status_code", code);
            if server_fault(code) {
                self.span.record("otel.status_code", "error");
            }
        }
    }
}

/// The codes OpenTelemetry's RPC conventions count as a server's error
/// (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
/// DATA_LOSS); a client's mistake leaves the span's status unset.
fn server_fault(code: u8) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// A response body that stops its call's clock when it ends or is dropped.
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B: Body + Unpin> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(call) = self.call.as_mut()
                {
                    call.status = Some(grpc_status(trailers).unwrap_or(UNKNOWN));
                }
            }
            Poll::Ready(None) => {
                if let Some(mut call) = self.call.take() {
                    // Ended without trailers: a trailers-only answer keeps
                    // its header status; anything else is not gRPC's way.
                    call.status = call.status.or(Some(UNKNOWN));
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROKER: RpcService = RpcService {
        name: "mayfly.v1.Broker",
        methods: &["MintJwtSvid", "WatchRevocations"],
    };

    #[test]
    fn only_the_service_s_methods_are_labels() {
        assert_eq!(
            BROKER.method_of("/mayfly.v1.Broker/MintJwtSvid"),
            "MintJwtSvid"
        );
        assert_eq!(
            BROKER.method_of("/mayfly.v1.Broker/WatchRevocations"),
            "WatchRevocations"
        );
        for path in [
            "/mayfly.v1.Broker/NoSuchMethod",
            "/mayfly.v1.Admin/CreateEntry",
            "/evil/MintJwtSvid",
            "/mayfly.v1.Broker/MintJwtSvid/extra",
            "",
            "/",
        ] {
            assert_eq!(BROKER.method_of(path), OTHER_METHOD, "{path}");
        }
    }

    #[test]
    fn a_status_is_a_grpc_code_or_nothing() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", "7".parse().unwrap());
        assert_eq!(grpc_status(&headers), Some(7));
        headers.insert("grpc-status", "17".parse().unwrap());
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(grpc_status(&headers), None);
    }

    #[test]
    fn only_server_faults_mark_a_span_as_error() {
        let faults: Vec<u8> = (0..=16).filter(|code| server_fault(*code)).collect();
        assert_eq!(faults, [2, 4, 12, 13, 14, 15]);
    }

    /// Spans under a subscriber that records them, as the OTLP one does
    /// (without any, every span is disabled and the checks below could not
    /// fail).
    #[test]
    fn a_span_is_opened_only_for_a_sampled_call() {
        let meter = crate::Metrics::new().meter("test");
        let headers = |flags: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "traceparent",
                format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}")
                    .parse()
                    .unwrap(),
            );
            headers
        };
        let off = RpcLayer::new(&BROKER, &meter, None);
        let never = RpcLayer::new(&BROKER, &meter, Some(Sampling::ratio(0.0)));
        let always = RpcLayer::new(&BROKER, &meter, Some(Sampling::ratio(1.0)));
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            // Traces off: no span, even for a caller that sampled.
            assert!(off.span("MintJwtSvid", &headers("01")).is_none());
            // Ratio 0: only what a caller sampled.
            assert!(never.span("MintJwtSvid", &HeaderMap::new()).is_none());
            assert!(never.span("MintJwtSvid", &headers("00")).is_none());
            assert!(!never.span("MintJwtSvid", &headers("01")).is_none());
            // Ratio 1: every call without a decision; a caller's "not
            // sampled" still wins.
            assert!(!always.span("MintJwtSvid", &HeaderMap::new()).is_none());
            assert!(always.span("MintJwtSvid", &headers("00")).is_none());
        });
    }
}
