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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::{Body, Frame, SizeHint};
use hyper::header::HeaderMap;
use hyper::{Request, Response};

use super::BrokerMetrics;

/// The methods of `mayfly.v1.Broker`, as in `proto/mayfly/v1/broker.proto`
/// (a test keeps the two the same).
pub const BROKER_METHODS: &[&str] = &[
    "AttestAndIssue",
    "RenewX509Svid",
    "MintJwtSvid",
    "GetBundle",
    "WatchBundle",
    "ValidateJwtSvid",
    "CreateX509PopChallenge",
    "MintJwtSvidWithEvidence",
    "ListAgentEntries",
    "BatchMintX509Svids",
    "BatchMintJwtSvids",
    "WatchRevocations",
];

/// The gRPC service whose methods are labels.
pub const BROKER_SERVICE: &str = "mayfly.v1.Broker";

/// What a path that is not one of [`BROKER_METHODS`] is counted as.
const OTHER: &str = "_OTHER";

/// `grpc-status` of a call that ended without one.
const CANCELLED: u8 = 1;
/// `grpc-status` of a response without one anywhere (not gRPC's way).
const UNKNOWN: u8 = 2;

/// The layer: wrap the broker's gRPC service in it.
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<BrokerMetrics>,
}

impl RpcMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<BrokerMetrics>) -> Self {
        RpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    metrics: Arc<BrokerMetrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, RequestBody, ResponseBody> tower::Service<Request<RequestBody>> for RpcMetrics<S>
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
        let call = Call {
            method: method_of(request.uri().path()),
            started: Instant::now(),
            status: None,
            metrics: self.metrics.clone(),
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            // A call that fails before a response (or is dropped) is
            // recorded by `call`'s drop, as cancelled.
            let response = response.await?;
            let mut call = call;
            call.status = grpc_status(response.headers());
            Ok(response.map(|inner| TimedBody {
                inner,
                call: Some(call),
            }))
        })
    }
}

/// The label of `path` (`/mayfly.v1.Broker/MintJwtSvid`): the method, or
/// `_OTHER`.
pub fn method_of(path: &str) -> &'static str {
    path.strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .filter(|(service, _)| *service == BROKER_SERVICE)
        .and_then(|(_, method)| BROKER_METHODS.iter().find(|m| **m == method))
        .copied()
        .unwrap_or(OTHER)
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
    method: &'static str,
    started: Instant,
    status: Option<u8>,
    metrics: Arc<BrokerMetrics>,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.metrics.rpc(
            self.method,
            self.status.unwrap_or(CANCELLED),
            self.started.elapsed(),
        );
    }
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

    #[test]
    fn the_method_list_is_the_proto_s() {
        let proto = include_str!("../../proto/mayfly/v1/broker.proto");
        let in_proto: Vec<&str> = proto
            .lines()
            .filter_map(|line| line.trim().strip_prefix("rpc "))
            .filter_map(|rest| rest.split('(').next())
            .map(str::trim)
            .collect();
        assert_eq!(in_proto, BROKER_METHODS);
    }

    #[test]
    fn only_the_broker_s_methods_are_labels() {
        assert_eq!(method_of("/mayfly.v1.Broker/MintJwtSvid"), "MintJwtSvid");
        assert_eq!(
            method_of("/mayfly.v1.Broker/WatchRevocations"),
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
            assert_eq!(method_of(path), OTHER, "{path}");
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
}
