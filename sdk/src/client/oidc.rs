//! Minting with platform evidence in one call, without an agent: the path a
//! CI job takes with the OIDC token its platform gives it.
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

use tonic::transport::Channel;

use crate::proto::v1 as pb;
use crate::proto::v1::broker_client::BrokerClient;

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
