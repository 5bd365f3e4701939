//! Calling the broker directly, without an agent: the path a CI job takes
//! with the OIDC token its platform gives it.
//!
//! ```no_run
//! # async fn demo(channel: tonic::transport::Channel, id_token: &str) -> Result<(), tonic::Status> {
//! use mayfly_sdk::client::mint_jwt_svid_with_oidc_token;
//! use mayfly_sdk::proto::v1::broker_client::BrokerClient;
//!
//! let mut broker = BrokerClient::new(channel); // TLS to the broker, trusting its bundle
//! let minted = mint_jwt_svid_with_oidc_token(&mut broker, id_token, "deploy", None).await?;
//! println!("{} until {}", minted.spiffe_id, minted.expires_at);
//! # Ok(()) }
//! ```

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use crate::proto::v1 as pb;
use crate::proto::v1::broker_client::BrokerClient;

/// Why a connection to the broker could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerConnectError {
    /// The server address is not an `https://host:port` URL.
    #[error("broker address {server:?}: {reason}")]
    InvalidAddress {
        /// What was given.
        server: String,
        /// Why it is unusable.
        reason: String,
    },
    /// The trust bundle or the client identity cannot be used.
    #[error("TLS setup: {reason}")]
    Tls {
        /// Why.
        reason: String,
    },
    /// The broker did not answer, or the TLS handshake failed.
    #[error("cannot reach the broker at {server}: {reason}")]
    Unreachable {
        /// The address.
        server: String,
        /// The transport's reason.
        reason: String,
    },
}

/// How long [`connect_broker`] waits for TCP and TLS.
pub const BROKER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects directly to the broker at `server` (`https://host:port`) over
/// TLS, trusting only the root CAs in `bundle_pem`. With `identity` =
/// (certificate chain PEM, private key PEM) the client authenticates with
/// that X509-SVID (mTLS), as renewal and JWT minting require.
///
/// # Errors
///
/// [`BrokerConnectError::InvalidAddress`] for a bad URL,
/// [`BrokerConnectError::Tls`] for unusable TLS material,
/// [`BrokerConnectError::Unreachable`] when the broker does not answer.
pub async fn connect_broker(
    server: &str,
    bundle_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<BrokerClient<Channel>, BrokerConnectError> {
    let invalid = |reason: &str| BrokerConnectError::InvalidAddress {
        server: server.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = server.parse().map_err(|_| invalid("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(invalid(
            "must be an https:// URL (the broker only speaks TLS)",
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if !bundle_pem
        .windows(27)
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(BrokerConnectError::Tls {
            reason: "the trust bundle holds no PEM certificate".into(),
        });
    }
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(bundle_pem));
    if let Some((chain, key)) = identity {
        tls = tls.identity(Identity::from_pem(chain, key));
    }
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|e| invalid(&e.to_string()))?
        .tls_config(tls)
        .map_err(|e| BrokerConnectError::Tls {
            reason: e.to_string(),
        })?
        .connect_timeout(BROKER_CONNECT_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| BrokerConnectError::Unreachable {
            server: server.to_owned(),
            reason: error_chain(&e),
        })?;
    Ok(BrokerClient::new(channel))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A JWT-SVID fresh from the broker. Debug never shows the token.
#[derive(Clone)]
pub struct MintedJwtSvid {
    /// The compact JWS, to send as a bearer token.
    pub token: String,
    /// Its subject.
    pub spiffe_id: String,
    /// Its expiry, unix seconds.
    pub expires_at: i64,
    /// Its `jti`.
    pub jti: String,
}

impl std::fmt::Debug for MintedJwtSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedJwtSvid")
            .field("token", &"[redacted]")
            .field("spiffe_id", &self.spiffe_id)
            .field("expires_at", &self.expires_at)
            .field("jti", &self.jti)
            .finish()
    }
}

/// Trades an OIDC ID token (GitHub Actions, GitLab CI, ...) for a JWT-SVID
/// for `audience` in one call. `ttl` may only shorten the entry's TTL.
///
/// # Errors
///
/// The broker's status: `Unauthenticated` when the token is refused (its
/// message says why: expired, wrong audience, replayed, ...),
/// `PermissionDenied` when no entry matches or the audience is not allowed,
/// `Unavailable` when the broker cannot check replay and fails closed.
pub async fn mint_jwt_svid_with_oidc_token(
    broker: &mut BrokerClient<Channel>,
    oidc_token: &str,
    audience: &str,
    ttl: Option<Duration>,
) -> Result<MintedJwtSvid, tonic::Status> {
    let ttl_seconds = match ttl {
        None => 0,
        Some(ttl) => u32::try_from(ttl.as_secs().max(1))
            .map_err(|_| tonic::Status::invalid_argument("ttl is too long"))?,
    };
    let request = pb::MintJwtSvidWithEvidenceRequest {
        evidence: Some(pb::mint_jwt_svid_with_evidence_request::Evidence::Oidc(
            pb::OidcEvidence {
                token: oidc_token.to_owned(),
            },
        )),
        audience: audience.to_owned(),
        ttl_seconds,
        spiffe_id: String::new(),
    };
    let minted = broker
        .mint_jwt_svid_with_evidence(request)
        .await?
        .into_inner();
    Ok(MintedJwtSvid {
        token: minted.token,
        spiffe_id: minted.spiffe_id,
        expires_at: minted.expires_at,
        jti: minted.jti,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[tokio::test]
    async fn bad_addresses_and_bundles_are_refused_before_connecting() {
        let plain = connect_broker("http://127.0.0.1:7443", PEM, None).await;
        assert!(matches!(
            plain,
            Err(BrokerConnectError::InvalidAddress { .. })
        ));
        let garbage = connect_broker("not a url", PEM, None).await;
        assert!(matches!(
            garbage,
            Err(BrokerConnectError::InvalidAddress { .. })
        ));
        let empty = connect_broker("https://127.0.0.1:7443", b"", None).await;
        assert!(matches!(empty, Err(BrokerConnectError::Tls { .. })));
        // Positive control for the checks: a well-formed address and a real
        // certificate get as far as connecting (nothing listens on port 1).
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let root = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let refused = connect_broker("https://127.0.0.1:1", root.pem().as_bytes(), None).await;
        assert!(
            matches!(refused, Err(BrokerConnectError::Unreachable { .. })),
            "{refused:?}"
        );
    }
}
