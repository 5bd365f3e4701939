use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::*;
use crate::attest::jwks::JwksSource;
use crate::attest::testing::{TestKey, encode_token, jwks_of};

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
    let payload =
        br#"{"iss":"https://issuer.example","aud":"mayfly","exp":1700000600,"x":{"a":1,"a":2}}"#;
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
    assert!(is_label("prod-eu_1"));
    assert!(is_label(&"a".repeat(63)));
    for bad in ["", "Prod", "a:b", "a b", &"a".repeat(64)] {
        assert!(!is_label(bad), "{bad:?}");
    }
}
