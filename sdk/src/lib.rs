//! # mayfly-sdk
//!
//! The types every Mayfly component and every relying party shares:
//!
//! - [`SpiffeId`] and [`TrustDomain`], parsed strictly by SPIFFE-ID.md;
//! - [`bundle::SpiffeBundle`], the SPIFFE trust bundle (a JWKS document with
//!   `spiffe_sequence` and `spiffe_refresh_hint`), parsed and produced;
//! - [`jwt::JwtSvidValidator`], strict JWT-SVID validation (algorithm
//!   allow-list first, size limit before decoding, required `exp` and `aud`);
//! - [`proto`], the generated gRPC API.
//!
//! Nothing in this crate knows how to issue a credential.
//!
//! ```
//! use mayfly_sdk::SpiffeId;
//!
//! let id: SpiffeId = "spiffe://example.org/billing/api".parse().unwrap();
//! assert_eq!(id.trust_domain().as_str(), "example.org");
//! assert_eq!(id.path(), "/billing/api");
//! assert!("spiffe://Example.org/x".parse::<SpiffeId>().is_err());
//! ```

#![forbid(unsafe_code)]

pub mod bundle;
pub mod client;
pub mod jwt;
pub mod proto;
pub mod spiffe_id;

pub use spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
