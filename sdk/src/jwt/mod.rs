//! JWT-SVID validation, strict by JWT-SVID.md and RFC 8725.
//!
//! [`JwtSvidValidator`] holds one trust domain's JWT authorities, parsed once.
//! [`JwtSvidValidator::validate`] checks, in this order, and stops at the
//! first failure:
//!
//! 1. the token's size, before decoding anything;
//! 2. its shape: three unpadded base64url parts;
//! 3. the header, a JSON object without repeated members: `alg` on the
//!    allow-list (ES256, ES384, RS256, PS256) before anything else in it,
//!    and before any key, is looked at; then only `alg`, `kid` and `typ`;
//!    `typ`, if present, `JWT` or `JOSE`; a `kid`;
//! 4. a known `kid`, whose key type fits `alg`;
//! 5. the signature;
//! 6. the claims: `sub` the SPIFFE ID of a workload in the trust domain (not
//!    the trust domain's own ID); `exp` an integer and not past; `aud`
//!    containing the caller's audience; `nbf` and `iat`, if present, integers
//!    and not in the future; and the lifetime: `exp` at most the maximum
//!    lifetime ([`MAX_JWT_SVID_LIFETIME`], 1 h, by default) after the time of
//!    the check and, if present, after `iat`. A small leeway (30 s by
//!    default) applies to every time check.
//!
//! Steps 1–3 and 5 are the shared JOSE layer ([`crate::jose`], failing with
//! [`JwtSvidError::Jose`]); the key set and the claims are this module's.
//!
//! JWT-SVID.md sets no upper limit on `exp`; this validator does, because a
//! validly signed token that lives for years (an `exp` of `i64::MAX`) is
//! what a compromised or misconfigured signer would produce, and Mayfly
//! never issues one. Other claims, such as `iss`, are allowed and ignored.
//!
//! Errors never contain the token: it is a bearer credential.
//!
//! ```no_run
//! use mayfly_sdk::jwt::{Audience, JwtSvidValidator};
//! # fn demo(bundle: mayfly_sdk::bundle::SpiffeBundle, token: &str, now: i64)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! let validator = JwtSvidValidator::new(bundle.trust_domain.clone(), &bundle.jwt_authorities)?;
//! let audience = Audience::new("billing")?;
//! let svid = validator.validate(token, &audience, now)?;
//! println!("caller is {}", svid.spiffe_id);
//! # Ok(()) }
//! ```

use std::time::Duration;

mod audience;
mod claims;
mod error;
mod timestamp;
mod unverified;
mod validator;

pub use audience::{Audience, AudienceError, MAX_AUDIENCE_LEN};
pub use error::{JwtSvidError, LifetimeStart};
pub use unverified::{JwtHeader, insecure_decode_unverified};
pub use validator::{JwtSvidValidator, ValidatedJwtSvid};

/// Where a token part is named in an error; kept here for callers of the
/// JWT-SVID API that matched on it.
pub use crate::jose::TokenPart;

/// Default clock leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The longest lifetime a JWT-SVID may have, by default: Mayfly's hard cap
/// on every credential it issues (the broker's `HARD_TTL_CAP` is this
/// constant, so the two cannot drift apart). Change it per validator with
/// [`JwtSvidValidator::with_max_lifetime`].
pub const MAX_JWT_SVID_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Default limit on a token's length, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = crate::jose::JwsPolicy::JWT_SVID.max_token_bytes;

#[cfg(test)]
mod tests;
