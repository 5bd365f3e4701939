//! The JOSE layer every Mayfly verifier shares: one reading of a compact JWS,
//! one strict JSON parser, one header and algorithm policy, one JWK → key
//! conversion.
//!
//! Two verifiers sit on it: [`crate::jwt::JwtSvidValidator`] (JWT-SVIDs, for
//! the broker's `ValidateJwtSvid`, the agent and the SDK's `JwtVerifier`) and
//! the broker's attestors (Kubernetes service-account tokens and OIDC ID
//! tokens). They differ in policy — which header parameters, which `typ`,
//! which algorithms, how large a token — never in how a token is read, so a
//! token cannot mean one thing to one of them and another to the other.
//!
//! [`JwsPolicy::parse`] reads a token in an order that lets attacker input
//! reach as little code as possible, and stops at the first failure
//! ([`JoseError`] names it):
//!
//! 1. the size, before anything is decoded ([`compact`]);
//! 2. exactly three parts, each unpadded base64url ([`compact`], [`base64url`]);
//! 3. the header: a JSON object in which no member appears twice, at any
//!    depth ([`json`]);
//! 4. `alg`: present, a string, and on the use's allow-list
//!    ([`AlgorithmPolicy`]) — before any other header member, and before any
//!    key, is looked at (RFC 8725 §3.1);
//! 5. the other header members ([`HeaderPolicy`]): only the parameters the use
//!    allows, never `crit` (we understand no extension), `typ` as the use
//!    wants it, and a `kid`. Key-locating parameters (`jku`, `x5u`, `jwk`,
//!    `x5c`) are never followed: a key comes only from the caller's trusted
//!    set, chosen by `kid`.
//!
//! The caller then looks the `kid` up in its own keys and hands the key to
//! [`ParsedJws::verify`], which checks:
//!
//! 6. that `alg` fits the key's type (an ES256 token is never checked with an
//!    RSA key, whatever the allow-list says);
//! 7. the signature;
//! 8. only then decodes the claims, with the same strict JSON parser.
//!
//! What the claims must say is each verifier's business.
//!
//! # Keys and jsonwebtoken
//!
//! [`VerificationKey`] is built once, when a bundle or a JWKS is loaded, from
//! a JWK's parameters ([`jwk::public_key`]): EC P-256 and P-384 points,
//! RSA keys of 2048–8192 bits (through aws-lc-rs `RsaPublicKeyComponents`).
//! Each algorithm a key can verify is a `jsonwebtoken::crypto::JwtVerifier`,
//! the trait jsonwebtoken's own crypto providers implement; ours keeps the
//! parsed aws-lc-rs key. jsonwebtoken 11's aws-lc-rs verifiers keep the
//! key's bytes and parse them again on every call, and its `decode` builds a
//! verifier per token, which the rule "keys are parsed at load, never per
//! request" forbids (the A/B in BENCHMARKS.md measures what that costs).
//! Its claim validation reads the wall clock and accepts fractional dates,
//! so claims stay with the verifiers.
//!
//! ```
//! use mayfly_sdk::jose::{JoseError, JwsPolicy};
//!
//! // {"alg":"none"} . {} . (no signature)
//! let err = JwsPolicy::JWT_SVID.parse("eyJhbGciOiJub25lIn0.e30.").unwrap_err();
//! assert!(matches!(err, JoseError::UnsupportedAlgorithm { .. }));
//! ```

pub mod algorithm;
pub mod base64url;
pub mod compact;
mod error;
pub mod header;
pub mod json;
pub mod jwk;
pub mod jws;
pub mod key;

pub use algorithm::{AlgorithmPolicy, JwsAlgorithm};
pub use error::quoted;
pub use error::{JoseError, TokenPart};
pub use header::{HeaderPolicy, JoseHeader};
pub use json::{JsonError, parse_object};
pub use jwk::JwkError;
pub use jws::{JwsPolicy, ParsedJws};
pub use key::{KeyError, KeyType, VerificationKey};
