//! # mayfly-sdk
//!
//! The types every Mayfly component and every relying party shares:
//!
//! - [`SpiffeId`] and [`TrustDomain`], parsed strictly by SPIFFE-ID.md;
//! - [`bundle::SpiffeBundle`], the SPIFFE trust bundle (a JWKS document with
//!   `spiffe_sequence` and `spiffe_refresh_hint`), parsed and produced;
//! - [`jwt::JwtSvidValidator`], strict JWT-SVID validation (algorithm
//!   allow-list first, size limit before decoding, required `exp` and `aud`);
//! - [`jose`], the JOSE layer under it, which the broker's attestors share:
//!   compact JWS, strict JSON, header and algorithm policy, JWK → key;
//! - [`workload`], the workload's client of the SPIFFE Workload API: an
//!   [`X509Source`](workload::X509Source) with rustls mTLS configs that
//!   authorize peers by SPIFFE ID, a [`JwtSource`](workload::JwtSource)
//!   and a [`JwtVerifier`](workload::JwtVerifier), all kept fresh in the
//!   background;
//! - [`revocation`], the revocation set every verifier checks without a
//!   lock: a [`RevocationWatch`](revocation::RevocationWatch) follows the
//!   broker's stream and fails closed once stale, and
//!   [`JwtVerifier::with_revocations`](workload::JwtVerifier::with_revocations)
//!   puts it in front of local JWT-SVID validation;
//! - [`client`], the client side of the broker: connections to the broker
//!   and its admin socket, keys and CSRs, the SVID directory, x509pop
//!   signing; [`data_dir`] names the broker data directory's files;
//! - one implementation per format and chore, used by every crate:
//!   [`x509`] (an X509-SVID leaf's facts), [`pem`], [`files`] (atomic,
//!   permission-checked), [`selector`], [`clock`], [`backoff`], [`digest`],
//!   [`error_chain`];
//! - [`proto`], the generated gRPC API.
//!
//! Nothing in this crate knows how to issue a credential.
//!
//! ## Quick start
//!
//! SPIFFE IDs are parsed strictly:
//!
//! ```
//! use mayfly_sdk::SpiffeId;
//!
//! let id: SpiffeId = "spiffe://example.org/billing/api".parse().unwrap();
//! assert_eq!(id.trust_domain().as_str(), "example.org");
//! assert_eq!(id.path(), "/billing/api");
//! assert!("spiffe://Example.org/x".parse::<SpiffeId>().is_err());
//! ```
//!
//! A workload gets its credentials from the local agent, named by
//! `SPIFFE_ENDPOINT_SOCKET`, and keeps them fresh without thinking about it:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mayfly_sdk::jwt::Audience;
//! use mayfly_sdk::workload::{Authorizer, JwtSource, WorkloadClient, X509Source};
//!
//! let client = WorkloadClient::from_env().await?;
//! let x509 = X509Source::new(client.clone()).await?;
//! // mTLS to the database, which must be exactly this SPIFFE ID; the
//! // config presents the current SVID at every handshake.
//! let db = "spiffe://example.org/billing/db".parse()?;
//! let tls = x509.client_config(Authorizer::exact(db))?;
//! // A bearer token for an HTTP API, renewed at half its life.
//! let jwt = JwtSource::new(client).jwt(&Audience::new("reports")?).await?;
//! # let _ = (tls, jwt);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod backoff;
pub mod bundle;
pub mod client;
pub mod clock;
pub mod data_dir;
pub mod digest;
pub mod files;
pub mod jose;
pub mod jwt;
pub mod pem;
pub mod proto;
pub mod revocation;
pub mod selector;
pub mod spiffe_id;
pub mod workload;
pub mod x509;

pub use selector::Selector;

/// Makes aws-lc-rs the process's rustls crypto provider, as every Mayfly
/// component uses it (one crypto stack). Safe to call more than once.
pub fn install_crypto_provider() {
    // Err only means a provider (ours, from an earlier call) is set already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// An error and its causes on one line, joined by ": ": what a log line or a
/// message to a person should say of an error that has sources. A cause
/// whose text the line already holds (an error that prints its source, as
/// transport errors do) or that says nothing is not repeated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}
pub use spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layers(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| {
                Some(Layer {
                    text,
                    source: source.map(Box::new),
                })
            })
            .unwrap_or(Layer {
                text: "",
                source: None,
            })
    }

    #[test]
    fn error_chain_joins_causes_and_skips_repeats() {
        assert_eq!(
            super::error_chain(&layers(&["outer", "inner"])),
            "outer: inner"
        );
        // A cause the outer text already shows, and an empty one, add nothing.
        assert_eq!(
            super::error_chain(&layers(&[
                "connect failed: refused",
                "refused",
                "",
                "os error 111"
            ])),
            "connect failed: refused: os error 111"
        );
    }
}
