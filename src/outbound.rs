//! The broker's one HTTP client stack for requests it makes itself: hyper-util's client over
//! rustls on aws-lc-rs (no ring, no openssl). OIDC discovery and JWKS fetches
//! ([`crate::attest::jwks`]) and the audit log's HTTP anchor ([`crate::anchor`]) build
//! their connectors here, so both trust certificates the same way.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls_pki_types::CertificateDer;

/// Which certificates an `https` server may present.
#[derive(Debug)]
pub(crate) enum Roots {
    /// The operating system's root store.
    Native,
    /// These CAs only (a private CA), not the system's.
    Only(Vec<CertificateDer<'static>>),
    /// None: for a client that only ever speaks plain `http` (every URL it is given was
    /// checked to be `http` before), so no certificate can ever be trusted.
    Nothing,
}

/// Why a connector cannot be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectorError {
    /// The operating system's root certificates cannot be loaded.
    #[error("cannot load the system's root certificates: {0}")]
    NativeRoots(#[source] std::io::Error),
    /// rustls refused the configuration or a CA certificate.
    #[error("cannot configure TLS: {0}")]
    Tls(#[source] rustls::Error),
}

/// A connector for `http` and `https` URLs, HTTP/1.1, trusting `roots`, giving up on a TCP
/// connection after `connect_timeout` (if any; the caller bounds the whole request).
///
/// # Errors
/// [`ConnectorError::NativeRoots`] if `roots` is [`Roots::Native`] and none can be loaded;
/// [`ConnectorError::Tls`] if a certificate of [`Roots::Only`] is refused.
pub(crate) fn connector(
    roots: Roots,
    connect_timeout: Option<Duration>,
) -> Result<HttpsConnector<HttpConnector>, ConnectorError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(ConnectorError::Tls)?;
    let builder = match roots {
        Roots::Native => HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(ConnectorError::NativeRoots)?,
        Roots::Only(certificates) => {
            let mut store = rustls::RootCertStore::empty();
            for certificate in certificates {
                store.add(certificate).map_err(ConnectorError::Tls)?;
            }
            HttpsConnectorBuilder::new()
                .with_tls_config(tls.with_root_certificates(store).with_no_client_auth())
        }
        Roots::Nothing => HttpsConnectorBuilder::new().with_tls_config(
            tls.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    };
    let mut http = HttpConnector::new();
    // The TLS layer above hands https URLs to this connector as TCP connections.
    http.enforce_http(false);
    http.set_connect_timeout(connect_timeout);
    Ok(builder.https_or_http().enable_http1().wrap_connector(http))
}
