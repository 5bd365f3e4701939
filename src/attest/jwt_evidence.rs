//! Strict verification of issuer-signed JWTs, shared by the Kubernetes
//! ([`k8s_psat`](super::k8s_psat)) and OIDC ([`oidc`](super::oidc))
//! attestors.
//!
//! Reading the token is the SDK's JOSE layer ([`mayfly_sdk::jose`]), the same
//! one JWT-SVIDs go through, under the issuer-token policy: a token is
//! checked in an order that lets attacker input reach as little code as
//! possible, and each step fails with its own [`AttestError`]:
//!
//! 1. size ([`MAX_TOKEN_BYTES`]) before anything is decoded;
//! 2. exactly three base64url parts (no padding, canonical encoding);
//! 3. the header is a JSON object without duplicate members;
//! 4. `alg` is on the allow-list, before anything else in the header is
//!    looked at (`none`, `HS256`, ... are [`AttestError::UnsupportedAlgorithm`]);
//! 5. no `crit` header, and a `kid` ([`AttestError::Malformed`] otherwise);
//!    other header parameters are ignored;
//! 6. the key comes from the issuer's configured JWKS only — `jku`, `x5u` and
//!    `jwk` headers are never followed ([`AttestError::UnknownKeyId`]);
//! 7. `alg` suits that key's type, then the signature verifies
//!    ([`AttestError::BadSignature`]);
//! 8. only then are the claims parsed, refusing duplicate members at any
//!    depth, and judged here: `iss`, `aud`, `exp` (required integer), `nbf`,
//!    `iat` (required when a maximum age is set).
//!
//! [`peek`] runs steps 1–5 and reads the unverified `iss`, so an attestor can
//! pick which issuer's rules and keys to [`verify`] with.
//!
//! ```
//! use mayfly::attest::AttestError;
//! use mayfly::attest::jwt_evidence::peek;
//!
//! // {"alg":"none"} . {"iss":"x"} . (no signature)
//! let err = peek("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.").unwrap_err();
//! assert!(matches!(err, AttestError::UnsupportedAlgorithm { .. }));
//! ```

use std::time::Duration;

use mayfly_sdk::jose::algorithm::names;
use mayfly_sdk::jose::{AlgorithmPolicy, HeaderPolicy, JoseError, JwsAlgorithm, JwsPolicy};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::{Map, Value};

use super::jwks::JwksCache;
use super::{AttestError, AttestorConfigError, ReplayGuard, sha256_hex, truncated};

/// Tokens longer than this are refused before any decoding. Kubernetes and
/// CI ID tokens are 1–3 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The algorithms accepted unless an issuer's rules say otherwise. Only
/// asymmetric ones: an HMAC algorithm would let anyone who knows the public
/// key forge tokens.
pub const DEFAULT_ALGORITHMS: &[JwsAlgorithm] = AlgorithmPolicy::ISSUER_TOKEN.allowed();

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The maximum token age (`now - iat`) when the config sets none.
pub const DEFAULT_MAX_TOKEN_AGE: Duration = Duration::from_secs(60 * 60);

/// `jti` values longer than this (or not printable ASCII) are hashed before
/// they become part of a replay key.
const MAX_PLAIN_JTI: usize = 128;

/// What a token must satisfy for one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRules {
    /// The exact `iss` expected.
    pub issuer: String,
    /// A value the token's `aud` must contain.
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// When set, `iat` is required and may be at most this far in the past.
    pub max_age: Option<Duration>,
    /// The accepted `alg` values.
    pub allowed_algorithms: &'static [JwsAlgorithm],
}

impl JwtRules {
    /// Rules for `issuer` and `audience` with the defaults:
    /// [`DEFAULT_LEEWAY`], no maximum age, [`DEFAULT_ALGORITHMS`].
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        JwtRules {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            max_age: None,
            allowed_algorithms: DEFAULT_ALGORITHMS,
        }
    }
}

/// A token's routing information, read before its signature is checked.
/// Nothing here is trusted; it only selects which rules to verify with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    /// The `alg` header, already on [`DEFAULT_ALGORITHMS`].
    pub alg: JwsAlgorithm,
    /// The `kid` header.
    pub kid: String,
    /// The unverified `iss` claim.
    pub issuer: String,
}

/// The JOSE policy of issuer tokens accepting `allowed` algorithms.
fn policy(allowed: &'static [JwsAlgorithm]) -> JwsPolicy {
    JwsPolicy {
        max_token_bytes: MAX_TOKEN_BYTES,
        header: HeaderPolicy::ISSUER_TOKEN,
        algorithms: AlgorithmPolicy::new(allowed),
    }
}

/// Reads a token's header and unverified `iss`, after the size, structure
/// and algorithm checks (steps 1–5 of the [module docs](self)).
///
/// # Errors
///
/// [`AttestError::Malformed`] for a token that is too long, not three
/// base64url parts, or whose header or claims are not JSON objects, or has
/// no `kid`; [`AttestError::UnsupportedAlgorithm`] for an `alg` outside
/// [`DEFAULT_ALGORITHMS`]; [`AttestError::MissingClaim`] without a string `iss`.
pub fn peek(token: &str) -> Result<Peeked, AttestError> {
    let refused = |error| refusal(error, DEFAULT_ALGORITHMS);
    let jws = policy(DEFAULT_ALGORITHMS).parse(token).map_err(refused)?;
    let claims = jws.insecure_claims().map_err(refused)?;
    let issuer = match claims.get("iss") {
        Some(Value::String(issuer)) => issuer.clone(),
        _ => return Err(missing("iss", "string")),
    };
    Ok(Peeked {
        alg: jws.algorithm(),
        kid: jws.into_key_id(),
        issuer,
    })
}

/// Verifies `token` against `rules` with the issuer's `keys` at `now` (unix
/// seconds), and returns its claims.
///
/// # Errors
///
/// Each check of the [module docs](self) has its own error; besides those
/// of [`peek`]: [`AttestError::UnknownKeyId`] and
/// [`AttestError::Unavailable`] from [`JwksCache::key`];
/// [`AttestError::UnsupportedAlgorithm`] when `alg` does not suit the key;
/// [`AttestError::BadSignature`]; [`AttestError::UntrustedIssuer`];
/// [`AttestError::WrongAudience`]; [`AttestError::MissingClaim`] for a
/// missing or mistyped `exp`, `nbf`, `iat`, `iss` or `aud`;
/// [`AttestError::Expired`]; [`AttestError::NotYetValid`];
/// [`AttestError::TooOld`].
pub async fn verify(
    token: &str,
    rules: &JwtRules,
    keys: &JwksCache,
    now: i64,
) -> Result<Map<String, Value>, AttestError> {
    let refused = |error| refusal(error, rules.allowed_algorithms);
    let jws = policy(rules.allowed_algorithms)
        .parse(token)
        .map_err(refused)?;
    let key = keys.key(jws.key_id()).await?;
    let claims = jws.verify(key.key()).map_err(refused)?;
    check_claims(&claims, rules, now)?;
    Ok(claims)
}

/// The replay guard for a verified token: `<namespace>:jti:<jti>`, or
/// `<namespace>:sha256:<hex>` of the signed part (`header.payload`) when the
/// token has no `jti`. The signature is left out of the hash because ECDSA
/// signatures are malleable: `(r, n - s)` verifies too, and would otherwise
/// make a fresh key for the same token. Remembered until `exp + leeway`,
/// after which [`verify`] refuses the token anyway.
///
/// # Errors
///
/// [`AttestError::MissingClaim`] when `exp` is not an integer or `jti` is
/// present but not a non-empty string.
pub fn replay_guard(
    namespace: &str,
    token: &str,
    claims: &Map<String, Value>,
    leeway: Duration,
) -> Result<ReplayGuard, AttestError> {
    let expires_at = integer_claim(claims, "exp")?.ok_or_else(|| missing("exp", "integer"))?;
    let key = match claims.get("jti") {
        None => {
            let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
            format!("{namespace}:sha256:{}", sha256_hex(signed.as_bytes()))
        }
        Some(Value::String(jti)) if !jti.is_empty() => {
            if jti.len() <= MAX_PLAIN_JTI && jti.bytes().all(|b| b.is_ascii_graphic()) {
                format!("{namespace}:jti:{jti}")
            } else {
                format!("{namespace}:jti-sha256:{}", sha256_hex(jti.as_bytes()))
            }
        }
        Some(_) => return Err(missing("jti", "non-empty string")),
    };
    Ok(ReplayGuard {
        key,
        expires_at: expires_at.saturating_add(seconds(leeway)),
    })
}

/// The JOSE layer's refusal, in the attestors' terms: the algorithm and the
/// signature have their own variants (an algorithm that does not suit the
/// key names what the key would verify), the rest is malformed evidence —
/// including refusals a later SDK adds, so a new one fails closed.
fn refusal(error: JoseError, allowed: &'static [JwsAlgorithm]) -> AttestError {
    match error {
        // Already shortened by the JOSE layer.
        JoseError::UnsupportedAlgorithm { alg, .. } => AttestError::UnsupportedAlgorithm {
            alg,
            allowed: names(allowed),
        },
        JoseError::AlgorithmKeyMismatch { alg, key_type, .. } => {
            AttestError::UnsupportedAlgorithm {
                alg: alg.name().to_owned(),
                allowed: names(&AlgorithmPolicy::new(allowed).usable_with(key_type)),
            }
        }
        JoseError::BadSignature { .. } => AttestError::BadSignature,
        other => malformed(other.to_string()),
    }
}

fn check_claims(
    claims: &Map<String, Value>,
    rules: &JwtRules,
    now: i64,
) -> Result<(), AttestError> {
    match claims.get("iss") {
        Some(Value::String(issuer)) if *issuer == rules.issuer => {}
        Some(Value::String(issuer)) => {
            return Err(AttestError::UntrustedIssuer {
                found: truncated(issuer),
            });
        }
        _ => return Err(missing("iss", "string")),
    }
    check_audience(claims, &rules.audience)?;

    let leeway = seconds(rules.leeway);
    let expires_at = integer_claim(claims, "exp")?.ok_or_else(|| missing("exp", "integer"))?;
    if now >= expires_at.saturating_add(leeway) {
        return Err(AttestError::Expired {
            expired_at: expires_at,
            now,
        });
    }
    if let Some(not_before) = integer_claim(claims, "nbf")?
        && not_before > now.saturating_add(leeway)
    {
        return Err(AttestError::NotYetValid { not_before, now });
    }
    let issued_at = integer_claim(claims, "iat")?;
    if let Some(issued_at) = issued_at
        && issued_at > now.saturating_add(leeway)
    {
        return Err(AttestError::NotYetValid {
            not_before: issued_at,
            now,
        });
    }
    if let Some(max_age) = rules.max_age {
        let issued_at = issued_at.ok_or_else(|| missing("iat", "integer"))?;
        if now.saturating_sub(issued_at) > seconds(max_age) {
            return Err(AttestError::TooOld {
                issued_at,
                max_age_seconds: max_age.as_secs(),
            });
        }
    }
    Ok(())
}

fn check_audience(claims: &Map<String, Value>, expected: &str) -> Result<(), AttestError> {
    const EXPECTED: &str = "string or array of strings";
    let found: Vec<&str> = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(audience)) => vec![audience.as_str()],
        Some(Value::Array(audiences)) => audiences
            .iter()
            .map(|audience| audience.as_str().ok_or_else(|| missing("aud", EXPECTED)))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(missing("aud", EXPECTED)),
    };
    if found.contains(&expected) {
        return Ok(());
    }
    Err(AttestError::WrongAudience {
        expected: expected.to_owned(),
        // A handful is enough to diagnose, and bounds the error's size.
        found: found
            .iter()
            .take(8)
            .map(|audience| truncated(audience))
            .collect(),
    })
}

/// `Ok(None)` when absent; an error when present but not an integer (a
/// string or a fraction is refused rather than coerced).
fn integer_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, AttestError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .map(Some)
            .ok_or_else(|| missing(name, "integer")),
    }
}

fn malformed(reason: impl Into<String>) -> AttestError {
    AttestError::Malformed {
        reason: reason.into(),
    }
}

fn missing(claim: &str, expected: &'static str) -> AttestError {
    AttestError::MissingClaim {
        claim: claim.to_owned(),
        expected,
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Config helper: an optional humantime duration (`"1h"`, `"90s"`).
pub(crate) fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| humantime::parse_duration(text.trim()).map_err(de::Error::custom))
        .transpose()
}

/// Config helper: a name that becomes part of selectors (a cluster name, an
/// OIDC alias) is 1–63 of `[a-z0-9_-]`, so it can never contain the `:` that
/// separates selector fields.
pub(crate) fn is_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The settings every JWT issuer shares, whatever the attestor (a
/// Kubernetes cluster, an OIDC provider).
pub(crate) struct IssuerSettings<'a> {
    /// `k8s_psat` or `oidc`, for errors.
    pub(crate) attestor: &'static str,
    /// The cluster name or issuer alias, for errors.
    pub(crate) name: &'a str,
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) jwks_file: Option<&'a std::path::Path>,
    pub(crate) discovery_url: Option<&'a str>,
    pub(crate) jwks: Option<&'a str>,
    pub(crate) max_token_age: Option<Duration>,
}

/// Checks an issuer's shared settings and loads its keys (files and inline
/// documents now, discovery lazily): the verification rules and the cache.
pub(crate) fn issuer_rules_and_keys(
    settings: &IssuerSettings<'_>,
) -> Result<(JwtRules, super::jwks::JwksCache), AttestorConfigError> {
    let attestor = settings.attestor;
    let name = || settings.name.to_owned();
    if settings.issuer.is_empty() || settings.audience.is_empty() {
        return Err(AttestorConfigError::EmptyIssuerOrAudience {
            attestor,
            name: name(),
        });
    }
    let max_age = settings.max_token_age.unwrap_or(DEFAULT_MAX_TOKEN_AGE);
    if max_age.is_zero() {
        return Err(AttestorConfigError::ZeroMaxTokenAge {
            attestor,
            name: name(),
        });
    }
    let source = super::jwks::JwksSource::from_options(
        settings.jwks_file,
        settings.discovery_url,
        settings.jwks,
    )
    .ok_or_else(|| AttestorConfigError::JwksSource {
        attestor,
        name: name(),
    })?;
    let keys = super::jwks::JwksCache::new(settings.issuer, source).map_err(|source| {
        AttestorConfigError::Jwks {
            attestor,
            name: name(),
            issuer: settings.issuer.to_owned(),
            source,
        }
    })?;
    let mut rules = JwtRules::new(settings.issuer, settings.audience);
    rules.max_age = Some(max_age);
    Ok((rules, keys))
}

#[cfg(test)]
mod tests;
