//! The workload's side of the SPIFFE Workload API: getting X509-SVIDs and
//! JWT-SVIDs from the local agent, keeping them fresh, using them for mTLS,
//! and verifying JWT-SVIDs as a relying party.
//!
//! - [`WorkloadClient`] speaks the Workload API over the agent's Unix
//!   socket (`SPIFFE_ENDPOINT_SOCKET`), adding the `workload.spiffe.io`
//!   header the spec requires to every call.
//! - [`X509Source`] follows the agent's X509-SVID stream in the background
//!   and hands out the current SVID and bundle; its
//!   [`server_config`](X509Source::server_config) and
//!   [`client_config`](X509Source::client_config) are rustls configs for
//!   mTLS that always present the current SVID and authorize the peer by
//!   SPIFFE ID with an [`Authorizer`] (the server name is not checked).
//! - [`JwtSource`] hands out JWT-SVIDs per audience, cached and renewed at
//!   half their lifetime.
//! - [`JwtVerifier`] validates JWT-SVIDs locally against JWT bundles that
//!   follow the agent's stream.
//!
//! Every background task belongs to its source: dropping the last clone of
//! a source stops it. While the agent is away, sources keep serving what
//! they hold and reconnect with backoff and jitter. One crypto stack:
//! rustls and rustls-webpki on aws-lc-rs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mayfly_sdk::jwt::Audience;
//! use mayfly_sdk::workload::{Authorizer, JwtSource, JwtVerifier, WorkloadClient, X509Source};
//!
//! // SPIFFE_ENDPOINT_SOCKET=unix:///run/mayfly/agent.sock
//! let client = WorkloadClient::from_env().await?;
//!
//! // mTLS: accept only the billing web front end.
//! let x509 = X509Source::new(client.clone()).await?;
//! let web = "spiffe://example.org/billing/web".parse()?;
//! let tls = Arc::new(x509.server_config(Authorizer::exact(web))?);
//! let acceptor = tokio_rustls::TlsAcceptor::from(tls);
//!
//! // A bearer token for the database, and a verifier for incoming ones.
//! let jwts = JwtSource::new(client.clone());
//! let token = jwts.jwt(&Audience::new("billing-db")?).await?;
//! let verifier = JwtVerifier::new(client).await?;
//! let caller = verifier.verify(&token, &Audience::new("billing-db")?)?;
//! println!("{} until {}", caller.spiffe_id, caller.expires_at);
//! # let _ = acceptor;
//! # Ok(()) }
//! ```

mod client;
mod endpoint;
mod error;
mod jwt_source;
mod jwt_svid;
mod jwt_verifier;
mod task;
mod tls;
mod x509;
mod x509_source;

pub use client::{AgentValidatedJwt, UpdateStream, WorkloadClient};
pub use endpoint::ENDPOINT_SOCKET_ENV;
pub use error::WorkloadError;
pub use jwt_source::JwtSource;
pub use jwt_svid::{JwtBundles, JwtSvid, jwt_bundle_from_jwks};
pub use jwt_verifier::JwtVerifier;
pub use tls::Authorizer;
pub use x509::{X509Bundle, X509Context, X509Svid, spiffe_id_from_certificate};
pub use x509_source::X509Source;
