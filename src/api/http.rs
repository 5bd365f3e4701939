//! The plain HTTP endpoint: OIDC discovery and JWKS for relying parties
//! that verify JWT-SVIDs as ordinary JWTs, the SPIFFE bundle, the CRL, and
//! health.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use mayfly_sdk::revocation::RevocationSet;
use tokio::sync::watch;

use super::bundle::BundlePublisher;
use crate::clock::Clock;
use crate::telemetry::Telemetry;

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The served bundle.
    pub bundle: Arc<BundlePublisher>,
    /// The OIDC `issuer` (no trailing slash).
    pub issuer: String,
    /// The current CRL (DER).
    pub crl: watch::Receiver<Option<Arc<Vec<u8>>>>,
    /// The revocation index: a replica whose index is stale is not ready.
    pub revocations: Arc<RevocationSet>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The metrics `/metrics` serves.
    pub telemetry: Telemetry,
    /// Whether `/metrics` is served (`[telemetry] prometheus`).
    pub serve_metrics: bool,
}

/// The routes.
pub fn router(state: HttpState) -> Router {
    let router = if state.serve_metrics {
        Router::new().route("/metrics", get(metrics))
    } else {
        Router::new()
    };
    router
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/keys", get(jwks))
        .route("/bundle", get(spiffe_bundle))
        .route("/bundle.pem", get(bundle_pem))
        .route("/crl", get(crl))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(state))
}

fn json(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        body,
    )
        .into_response()
}

/// Every metric, as Prometheus text.
async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    match state.telemetry.render() {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, crate::telemetry::CONTENT_TYPE),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "cannot render /metrics");
            (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable\n").into_response()
        }
    }
}

async fn discovery(State(state): State<Arc<HttpState>>) -> Response {
    let document = serde_json::json!({
        "issuer": state.issuer,
        "jwks_uri": format!("{}/keys", state.issuer),
        "id_token_signing_alg_values_supported": ["ES256"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti"],
    });
    json(document.to_string())
}

async fn jwks(State(state): State<Arc<HttpState>>) -> Response {
    json(state.bundle.current().jwks_json.clone())
}

async fn spiffe_bundle(State(state): State<Arc<HttpState>>) -> Response {
    json(state.bundle.current().spiffe_json.clone())
}

async fn bundle_pem(State(state): State<Arc<HttpState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.bundle.current().roots_pem.clone(),
    )
        .into_response()
}

async fn crl(State(state): State<Arc<HttpState>>) -> Response {
    let current = state.crl.borrow().clone();
    match current {
        Some(der) => (
            [
                (header::CONTENT_TYPE, "application/pkix-crl"),
                (header::CACHE_CONTROL, "max-age=30"),
            ],
            der.as_ref().clone(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no CRL signed yet\n").into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    if state.bundle.current().proto.x509_authorities.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no trust bundle\n").into_response();
    }
    let now_ms = crate::clock::unix_millis(state.clock.now());
    if let Err(error) = state.revocations.check_fresh(now_ms) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response();
    }
    "ready\n".into_response()
}
