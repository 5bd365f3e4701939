//! Strict verification of issuer-signed JWTs, shared by the Kubernetes
//! ([`k8s_psat`](super::k8s_psat)) and OIDC ([`oidc`](super::oidc))
//! attestors.
//!
//! A token is checked in an order that lets attacker input reach as little
//! code as possible, and each step fails with its own [`AttestError`]:
//!
//! 1. size ([`MAX_TOKEN_BYTES`]) before anything is decoded;
//! 2. exactly three base64url parts (no padding, canonical encoding);
//! 3. the header is a JSON object without duplicate members;
//! 4. `alg` is on the allow-list, before anything else in the header is
//!    looked at (`none`, `HS256`, ... are [`AttestError::UnsupportedAlgorithm`]);
//! 5. no `crit` header, and a `kid` ([`AttestError::Malformed`] otherwise);
//! 6. the key comes from the issuer's configured JWKS only — `jku`, `x5u` and
//!    `jwk` headers are ignored ([`AttestError::UnknownKeyId`]);
//! 7. `alg` suits that key's type, then the signature verifies
//!    ([`AttestError::BadSignature`]);
//! 8. only then are the claims parsed: `iss`, `aud`, `exp` (required
//!    integer), `nbf`, `iat` (required when a maximum age is set).
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

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::jwks::JwksCache;
use super::{AttestError, ReplayGuard, sha256_hex, truncated};

/// Tokens longer than this are refused before any decoding. Kubernetes and
/// CI ID tokens are 1–3 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The algorithms accepted unless an issuer's rules say otherwise. Only
/// asymmetric ones: an HMAC algorithm would let anyone who knows the public
/// key forge tokens.
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "ES256", "ES384"];

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
    pub allowed_algorithms: &'static [&'static str],
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
    pub alg: String,
    /// The `kid` header.
    pub kid: String,
    /// The unverified `iss` claim.
    pub issuer: String,
}

/// A token split into its parts, with the header decoded.
struct Parts<'a> {
    header: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
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
    let parts = split(token)?;
    let (alg, kid) = check_header(&parts.header, DEFAULT_ALGORITHMS)?;
    let claims = decode_object("claims", parts.payload)?;
    let issuer = match claims.get("iss") {
        Some(Value::String(issuer)) => issuer.clone(),
        _ => return Err(missing("iss", "string")),
    };
    Ok(Peeked { alg, kid, issuer })
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
    let parts = split(token)?;
    let (alg, kid) = check_header(&parts.header, rules.allowed_algorithms)?;
    let key = keys.key(&kid).await?;
    let signature = URL_SAFE_NO_PAD
        .decode(parts.signature)
        .map_err(|_| malformed("the signature is not base64url without padding"))?;
    key.verify(&alg, parts.signing_input.as_bytes(), &signature)?;
    let claims = decode_object("claims", parts.payload)?;
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

fn split(token: &str) -> Result<Parts<'_>, AttestError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed(format!(
            "the token is {} bytes, more than the {MAX_TOKEN_BYTES} accepted",
            token.len()
        )));
    }
    let mut pieces = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(malformed("a JWT has exactly three dot-separated parts"));
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Parts {
        header: decode_object("header", header)?,
        signing_input,
        payload,
        signature,
    })
}

/// Checks `alg` first, then the rest of the header; returns `(alg, kid)`.
fn check_header(
    header: &Map<String, Value>,
    allowed: &[&str],
) -> Result<(String, String), AttestError> {
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        Some(_) => return Err(malformed("the alg header is not a string")),
        None => return Err(malformed("the header has no alg")),
    };
    if !allowed.contains(&alg.as_str()) {
        return Err(AttestError::UnsupportedAlgorithm {
            alg: truncated(alg),
            allowed: allowed.join(", "),
        });
    }
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood, and
    // we understand none.
    if header.contains_key("crit") {
        return Err(malformed(
            "critical header extensions (crit) are not supported",
        ));
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid,
        Some(_) => return Err(malformed("the kid header is not a non-empty string")),
        None => {
            return Err(malformed(
                "the header has no kid, so the issuer's key cannot be chosen",
            ));
        }
    };
    Ok((alg.clone(), kid.clone()))
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

fn decode_object(part: &str, encoded: &str) -> Result<Map<String, Value>, AttestError> {
    // The engine refuses padding and non-canonical trailing bits, so one
    // token has exactly one encoding of its header and claims.
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| malformed(format!("the {part} is not base64url without padding")))?;
    parse_json_object(&bytes).map_err(|reason| malformed(format!("the {part} is {reason}")))
}

/// Parses a JSON object, refusing duplicate member names at any depth.
/// Duplicates are where two parsers disagree (first wins or last wins), so a
/// token or key set that has them is not one we can read unambiguously.
/// The error says what is wrong without quoting the input.
pub(crate) fn parse_json_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(StrictValue(Value::Object(map))) => Ok(map),
        Ok(_) => Err("not a JSON object".to_owned()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// A [`Value`] whose deserializer refuses duplicate object members.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictValue, E> {
        Number::from_f64(v)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictValue, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom("an object has a duplicate member name"));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(name, value);
        }
        Ok(StrictValue(Value::Object(map)))
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
pub(crate) fn check_label(what: &str, value: &str) -> Result<(), String> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} {:?} must be 1-63 lowercase letters, digits, '-' or '_'",
            truncated(value)
        ))
    }
}

/// The settings every JWT issuer shares, whatever the attestor (a
/// Kubernetes cluster, an OIDC provider).
pub(crate) struct IssuerSettings<'a> {
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
) -> Result<(JwtRules, super::jwks::JwksCache), String> {
    if settings.issuer.is_empty() || settings.audience.is_empty() {
        return Err("issuer and audience must not be empty".to_owned());
    }
    let max_age = settings.max_token_age.unwrap_or(DEFAULT_MAX_TOKEN_AGE);
    if max_age.is_zero() {
        return Err("max_token_age must be more than zero".to_owned());
    }
    let source = super::jwks::JwksSource::from_options(
        settings.jwks_file,
        settings.discovery_url,
        settings.jwks,
    )?;
    let keys = super::jwks::JwksCache::new(settings.issuer, source).map_err(|e| e.to_string())?;
    let mut rules = JwtRules::new(settings.issuer, settings.audience);
    rules.max_age = Some(max_age);
    Ok((rules, keys))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::attest::jwks::JwksSource;
    use crate::attest::jwks::testing::{TestKey, encode_token, jwks_of};

    const NOW: i64 = 1_700_000_000;
    const ISSUER: &str = "https://issuer.example";
    const AUDIENCE: &str = "mayfly";

    fn claims() -> Value {
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "s", "exp": NOW + 600, "iat": NOW - 10})
    }

    fn cache(keys: &[&TestKey]) -> JwksCache {
        JwksCache::new(ISSUER, JwksSource::Inline(jwks_of(keys))).unwrap()
    }

    async fn check(token: &str, keys: &JwksCache) -> Result<Map<String, Value>, AttestError> {
        verify(token, &JwtRules::new(ISSUER, AUDIENCE), keys, NOW).await
    }

    #[tokio::test]
    async fn every_allowed_algorithm_verifies() {
        let rsa = TestKey::rsa(0, "r");
        let p256 = TestKey::p256("p");
        let p384 = TestKey::p384("q");
        let keys = cache(&[&rsa, &p256, &p384]);
        for key in [&rsa, &p256, &p384] {
            let claims = check(&key.token(&claims()), &keys).await.unwrap();
            assert_eq!(claims["sub"], "s");
        }
    }

    #[tokio::test]
    async fn alg_is_checked_before_anything_else_in_the_header() {
        // No kid and a crit header, but alg is refused first.
        let token = encode_token(&json!({"alg": "none", "crit": ["x"]}), &claims(), b"");
        assert!(matches!(
            peek(&token),
            Err(AttestError::UnsupportedAlgorithm { .. })
        ));
        let key = TestKey::rsa(0, "r");
        let token = encode_token(&json!({"alg": "RS256"}), &claims(), b"sig");
        assert!(matches!(peek(&token), Err(AttestError::Malformed { .. })));
        let token = key.sign_with_header(
            &json!({"alg": "RS256", "kid": "r", "crit": ["exp"]}),
            &claims(),
        );
        assert!(matches!(
            check(&token, &cache(&[&key])).await,
            Err(AttestError::Malformed { .. })
        ));
    }

    #[tokio::test]
    async fn algorithm_must_suit_the_key_type() {
        let rsa = TestKey::rsa(0, "k");
        let ec = TestKey::p256("k");
        // Control: the EC key verifies its own ES256 token.
        check(&ec.token(&claims()), &cache(&[&ec])).await.unwrap();
        // An RS256 token whose kid names an EC key is refused before any
        // signature check.
        let err = check(&rsa.token(&claims()), &cache(&[&ec]))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            AttestError::UnsupportedAlgorithm {
                alg: "RS256".into(),
                allowed: "ES256".into()
            }
        );
        // And the other way round, P-384 vs P-256.
        let p384 = TestKey::p384("k");
        let err = check(&p384.token(&claims()), &cache(&[&ec]))
            .await
            .unwrap_err();
        assert!(matches!(err, AttestError::UnsupportedAlgorithm { .. }));
    }

    #[tokio::test]
    async fn structure_is_strict() {
        let key = TestKey::p256("k");
        let keys = cache(&[&key]);
        let good = key.token(&claims());
        check(&good, &keys).await.unwrap();

        let too_long = format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(
            peek(&too_long),
            Err(AttestError::Malformed { .. })
        ));
        for bad in [
            format!("{good}.extra"),
            good.rsplit_once('.').unwrap().0.to_owned(),
            good.replacen('.', ".!", 1),
            format!("=={good}"),
        ] {
            assert!(
                matches!(peek(&bad), Err(AttestError::Malformed { .. })),
                "{bad}"
            );
        }
        // Padding on the signature: the key is found, the signature is not
        // decodable.
        assert!(matches!(
            check(&format!("{good}="), &keys).await,
            Err(AttestError::Malformed { .. })
        ));
        // A flipped signature byte decodes but does not verify.
        let (signed, signature) = good.rsplit_once('.').unwrap();
        let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        signature[0] ^= 1;
        let flipped = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature));
        assert_eq!(check(&flipped, &keys).await, Err(AttestError::BadSignature));
    }

    #[tokio::test]
    async fn duplicate_members_are_refused() {
        let key = TestKey::p256("k");
        let keys = cache(&[&key]);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k","alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        let token = format!("{header}.{payload}.AAAA");
        assert!(matches!(peek(&token), Err(AttestError::Malformed { .. })));

        // A duplicate inside the signed claims is refused after the
        // signature checks out.
        let payload = br#"{"iss":"https://issuer.example","aud":"mayfly","exp":1700000600,"x":{"a":1,"a":2}}"#;
        let token = key.sign_raw(payload);
        let err = check(&token, &keys).await.unwrap_err();
        assert!(matches!(err, AttestError::Malformed { .. }), "{err}");
    }

    #[tokio::test]
    async fn claim_types_and_times_are_strict() {
        let key = TestKey::p256("k");
        let keys = cache(&[&key]);
        let with = |name: &str, value: Value| {
            let mut claims = claims();
            claims[name] = value;
            key.token(&claims)
        };
        check(&with("aud", json!(["other", AUDIENCE])), &keys)
            .await
            .unwrap();
        assert_eq!(
            check(&with("exp", json!(1_700_000_600.5)), &keys).await,
            Err(AttestError::MissingClaim {
                claim: "exp".into(),
                expected: "integer"
            })
        );
        assert_eq!(
            check(&with("nbf", json!("0")), &keys).await,
            Err(AttestError::MissingClaim {
                claim: "nbf".into(),
                expected: "integer"
            })
        );
        assert!(matches!(
            check(&with("aud", json!([1])), &keys).await,
            Err(AttestError::MissingClaim { .. })
        ));
        // Within the leeway is fine, beyond it is not.
        check(&with("exp", json!(NOW - 29)), &keys).await.unwrap();
        assert!(matches!(
            check(&with("exp", json!(NOW - 30)), &keys).await,
            Err(AttestError::Expired { .. })
        ));
        check(&with("nbf", json!(NOW + 30)), &keys).await.unwrap();
        assert_eq!(
            check(&with("iat", json!(NOW + 31)), &keys).await,
            Err(AttestError::NotYetValid {
                not_before: NOW + 31,
                now: NOW
            })
        );
        // iat is only required when a maximum age is set.
        let mut no_iat = claims();
        no_iat.as_object_mut().unwrap().remove("iat");
        let token = key.token(&no_iat);
        check(&token, &keys).await.unwrap();
        let mut rules = JwtRules::new(ISSUER, AUDIENCE);
        rules.max_age = Some(Duration::from_secs(60));
        assert_eq!(
            verify(&token, &rules, &keys, NOW).await,
            Err(AttestError::MissingClaim {
                claim: "iat".into(),
                expected: "integer"
            })
        );
    }

    #[test]
    fn replay_key_uses_jti_or_the_signed_part() {
        let key = TestKey::p256("k");
        let mut claims = claims();
        let token = key.token(&claims);
        let map = claims.as_object().unwrap().clone();
        let guard = replay_guard("k8s:prod", &token, &map, DEFAULT_LEEWAY).unwrap();
        let signed = token.rsplit_once('.').unwrap().0;
        assert_eq!(
            guard.key,
            format!("k8s:prod:sha256:{}", sha256_hex(signed.as_bytes()))
        );
        assert_eq!(guard.expires_at, NOW + 600 + 30);
        // Another signature over the same claims gets the same key.
        let other = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        assert_eq!(
            replay_guard("k8s:prod", &other, &map, DEFAULT_LEEWAY)
                .unwrap()
                .key,
            guard.key
        );

        claims["jti"] = json!("abc-123");
        let map = claims.as_object().unwrap().clone();
        assert_eq!(
            replay_guard("k8s:prod", &token, &map, DEFAULT_LEEWAY)
                .unwrap()
                .key,
            "k8s:prod:jti:abc-123"
        );
        claims["jti"] = json!("has space");
        let map = claims.as_object().unwrap().clone();
        assert!(
            replay_guard("n", &token, &map, DEFAULT_LEEWAY)
                .unwrap()
                .key
                .starts_with("n:jti-sha256:")
        );
        claims["jti"] = json!(5);
        let map = claims.as_object().unwrap().clone();
        assert!(matches!(
            replay_guard("n", &token, &map, DEFAULT_LEEWAY),
            Err(AttestError::MissingClaim { .. })
        ));
    }

    #[test]
    fn labels() {
        check_label("cluster", "prod-eu_1").unwrap();
        for bad in ["", "Prod", "a:b", "a b", &"a".repeat(64)] {
            assert!(check_label("cluster", bad).is_err(), "{bad:?}");
        }
    }
}
