//! The validator's tests: every check of the module docs, each refusal next
//! to a positive control.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::claims::duration_secs;
use super::timestamp::Timestamp;
use super::*;
use crate::bundle::{JwtAuthority, JwtPublicKey};
use crate::jose::{JoseError, JwsAlgorithm, KeyError, KeyType};
use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

const SVID_ALGORITHMS: &[JwsAlgorithm] = crate::jose::AlgorithmPolicy::JWT_SVID.allowed();
const SVID_HEADERS: &[&str] = &["alg", "kid", "typ"];

const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const SUB: &str = "spiffe://example.org/ns/billing/sa/api";

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn aud(s: &str) -> Audience {
    Audience::new(s).unwrap()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An ECDSA signing key and the bundle entry for its public half.
struct EcSigner {
    key: EcdsaKeyPair,
    kid: String,
}

impl EcSigner {
    fn new(alg: &'static EcdsaSigningAlgorithm, kid: &str) -> Self {
        Self {
            key: EcdsaKeyPair::generate(alg).unwrap(),
            kid: kid.to_owned(),
        }
    }

    fn p256(kid: &str) -> Self {
        Self::new(&ECDSA_P256_SHA256_FIXED_SIGNING, kid)
    }

    fn authority(&self) -> JwtAuthority {
        // The uncompressed point: 0x04 || x || y.
        let point = self.key.public_key().as_ref();
        let half = (point.len() - 1) / 2;
        let (x, y) = (&point[1..=half], &point[1 + half..]);
        let public_key = match half {
            32 => JwtPublicKey::EcP256 {
                x: x.try_into().unwrap(),
                y: y.try_into().unwrap(),
            },
            48 => JwtPublicKey::EcP384 {
                x: x.try_into().unwrap(),
                y: y.try_into().unwrap(),
            },
            _ => unreachable!(),
        };
        JwtAuthority {
            key_id: self.kid.clone(),
            public_key,
        }
    }

    /// Signs `header` and `claims` as given, JSON-encoded.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig))
    }

    /// An ES256 token with this key's kid.
    fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

fn claims() -> Value {
    json!({
        "sub": SUB,
        "aud": "billing",
        "exp": NOW + 300,
        "iat": NOW - 10,
        "jti": "6e0d2d1c",
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn setup() -> (EcSigner, JwtSvidValidator) {
    let signer = EcSigner::p256("k1");
    let validator = JwtSvidValidator::new(td(), &[signer.authority()]).unwrap();
    (signer, validator)
}

fn check(validator: &JwtSvidValidator, token: &str) -> Result<ValidatedJwtSvid, JwtSvidError> {
    validator.validate(token, &aud("billing"), NOW)
}

#[test]
fn valid_token_is_accepted_with_its_claims() {
    let (signer, validator) = setup();
    let svid = check(&validator, &signer.token(&claims())).unwrap();
    assert_eq!(
        svid,
        ValidatedJwtSvid {
            spiffe_id: SpiffeId::parse(SUB).unwrap(),
            audience: vec!["billing".into()],
            expires_at: NOW + 300,
            issued_at: Some(NOW - 10),
            jti: Some("6e0d2d1c".into()),
            key_id: "k1".into(),
        }
    );
    // Minimal token: sub, aud, exp; no typ.
    let minimal = json!({"sub": SUB, "aud": "billing", "exp": NOW + 1});
    let token = signer.sign(&json!({"alg": "ES256", "kid": "k1"}), &minimal);
    let svid = check(&validator, &token).unwrap();
    assert_eq!((svid.issued_at, svid.jti), (None, None));
    let token = signer.sign(
        &json!({"alg": "ES256", "kid": "k1", "typ": "JOSE"}),
        &minimal,
    );
    assert!(check(&validator, &token).is_ok());
}

#[test]
fn expiry_honours_the_leeway() {
    let (signer, validator) = setup();
    let at = |exp: i64| {
        check(
            &validator,
            &signer.token(&with(claims(), "exp", exp.into())),
        )
    };
    assert!(at(NOW).is_ok());
    assert!(at(NOW - 30).is_ok(), "within the 30 s leeway");
    assert_eq!(
        at(NOW - 31),
        Err(JwtSvidError::Expired {
            expired_at: NOW - 31,
            now: NOW
        })
    );
    let strict = validator.with_leeway(Duration::ZERO);
    let token = signer.token(&with(claims(), "exp", (NOW - 1).into()));
    assert!(matches!(
        check(&strict, &token),
        Err(JwtSvidError::Expired { .. })
    ));
    let token = signer.token(&with(claims(), "exp", NOW.into()));
    assert!(check(&strict, &token).is_ok());
}

/// What `validate` says of a token with `exp` and, if given, `iat`.
fn lifetime_check(
    signer: &EcSigner,
    validator: &JwtSvidValidator,
    exp: i64,
    iat: Option<i64>,
) -> Result<ValidatedJwtSvid, JwtSvidError> {
    let claims = with(claims(), "exp", exp.into());
    let claims = match iat {
        Some(iat) => with(claims, "iat", iat.into()),
        None => without(claims, "iat"),
    };
    check(validator, &signer.token(&claims))
}

fn too_long(
    exp: i64,
    measured_from: LifetimeStart,
    start: i64,
    max_lifetime_secs: i64,
    leeway_secs: i64,
) -> Result<ValidatedJwtSvid, JwtSvidError> {
    Err(JwtSvidError::LifetimeTooLong {
        expires_at: exp,
        measured_from,
        start,
        lifetime_secs: exp.saturating_sub(start),
        max_lifetime_secs,
        leeway_secs,
    })
}

#[test]
fn exp_at_most_the_maximum_lifetime_plus_leeway_ahead_of_now() {
    let (signer, validator) = setup();
    let hour = 3600;
    assert_eq!(duration_secs(MAX_JWT_SVID_LIFETIME), hour);
    // The edge: one hour plus the 30 s leeway is accepted, with and without iat.
    assert!(lifetime_check(&signer, &validator, NOW + hour + 30, Some(NOW)).is_ok());
    assert!(lifetime_check(&signer, &validator, NOW + hour + 30, None).is_ok());
    // One second more is not, whatever iat says.
    for iat in [Some(NOW), Some(NOW + 30), None] {
        assert_eq!(
            lifetime_check(&signer, &validator, NOW + hour + 31, iat),
            too_long(NOW + hour + 31, LifetimeStart::Now, NOW, hour, 30),
            "iat {iat:?}"
        );
    }
    // The finding: a validly signed token that never expires.
    for iat in [Some(NOW), None] {
        assert_eq!(
            lifetime_check(&signer, &validator, i64::MAX, iat),
            too_long(i64::MAX, LifetimeStart::Now, NOW, hour, 30),
            "iat {iat:?}"
        );
    }
}

#[test]
fn exp_at_most_the_maximum_lifetime_plus_leeway_after_iat() {
    let (signer, validator) = setup();
    let hour = 3600;
    // 700 s left is fine from now; what counts is how long it was minted for.
    let exp = NOW + 700;
    assert!(lifetime_check(&signer, &validator, exp, Some(exp - hour - 30)).is_ok());
    assert_eq!(
        lifetime_check(&signer, &validator, exp, Some(exp - hour - 31)),
        too_long(exp, LifetimeStart::IssuedAt, exp - hour - 31, hour, 30)
    );
    // An iat far in the past cannot overflow the subtraction into acceptance.
    assert_eq!(
        lifetime_check(&signer, &validator, exp, Some(i64::MIN)),
        too_long(exp, LifetimeStart::IssuedAt, i64::MIN, hour, 30)
    );
    assert_eq!(
        too_long(exp, LifetimeStart::IssuedAt, i64::MIN, hour, 30)
            .unwrap_err()
            .to_string(),
        format!(
            "the token expires at {}, {}s after its iat (unix {}); \
             at most 3600s (plus 30s leeway) is accepted",
            Timestamp(exp),
            i64::MAX,
            i64::MIN
        )
    );
}

#[test]
fn the_maximum_lifetime_is_settable() {
    let (signer, validator) = setup();
    let ten_minutes = validator
        .clone()
        .with_max_lifetime(Duration::from_secs(600));
    assert!(lifetime_check(&signer, &ten_minutes, NOW + 630, Some(NOW)).is_ok());
    assert_eq!(
        lifetime_check(&signer, &ten_minutes, NOW + 631, Some(NOW)),
        too_long(NOW + 631, LifetimeStart::Now, NOW, 600, 30)
    );
    let strict = ten_minutes.with_leeway(Duration::ZERO);
    assert!(lifetime_check(&signer, &strict, NOW + 600, Some(NOW)).is_ok());
    assert_eq!(
        lifetime_check(&signer, &strict, NOW + 601, Some(NOW)),
        too_long(NOW + 601, LifetimeStart::Now, NOW, 600, 0)
    );
    // A longer maximum accepts what the default refuses.
    let day = validator.with_max_lifetime(Duration::from_secs(86_400));
    assert!(lifetime_check(&signer, &day, NOW + 86_400, Some(NOW)).is_ok());
    assert!(lifetime_check(&signer, &day, NOW + 86_431, Some(NOW)).is_err());
}

#[test]
fn iss_is_neither_required_nor_judged() {
    let (signer, validator) = setup();
    // Mayfly's tokens carry `iss` since it was added; earlier ones do not.
    assert!(check(&validator, &signer.token(&claims())).is_ok());
    for iss in ["https://mayfly.example.org", "urn:other-issuer"] {
        let token = signer.token(&with(claims(), "iss", iss.into()));
        assert!(check(&validator, &token).is_ok(), "{iss}");
    }
}

#[test]
fn a_subject_without_a_path_names_no_workload() {
    let (signer, validator) = setup();
    let subject = |sub: &str| {
        check(
            &validator,
            &signer.token(&with(claims(), "sub", sub.into())),
        )
    };
    assert!(subject("spiffe://example.org/w").is_ok());
    assert_eq!(
        subject("spiffe://example.org"),
        Err(JwtSvidError::SubjectWithoutPath {
            subject: SpiffeId::parse("spiffe://example.org").unwrap()
        })
    );
    // A trailing slash is not a way around it.
    assert_eq!(
        subject("spiffe://example.org/"),
        Err(JwtSvidError::BadSubject {
            reason: SpiffeIdError::TrailingSlash
        })
    );
    // Another trust domain's own ID is refused for its trust domain first.
    assert!(matches!(
        subject("spiffe://other.org"),
        Err(JwtSvidError::WrongTrustDomain { .. })
    ));
}

#[test]
fn alg_none_is_refused_before_anything_else() {
    let (signer, validator) = setup();
    assert!(check(&validator, &signer.token(&claims())).is_ok());
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none"}).to_string()),
        b64(claims().to_string())
    );
    assert_eq!(
        check(&validator, &unsigned),
        Err(JwtSvidError::Jose(JoseError::UnsupportedAlgorithm {
            alg: "none".into(),
            allowed: SVID_ALGORITHMS
        }))
    );
    let with_kid = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "k1", "typ": "JWT"}).to_string()),
        b64(claims().to_string())
    );
    assert_eq!(
        check(&validator, &with_kid),
        Err(JwtSvidError::Jose(JoseError::UnsupportedAlgorithm {
            alg: "none".into(),
            allowed: SVID_ALGORITHMS
        }))
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let (signer, validator) = setup();
    assert!(check(&validator, &signer.token(&claims())).is_ok());
    // The classic key-confusion attack: HMAC keyed with the public key.
    let public = signer.key.public_key().as_ref().to_vec();
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "HS256", "kid": "k1", "typ": "JWT"}).to_string()),
        b64(claims().to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &public);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let token = format!("{input}.{}", b64(tag));
    assert_eq!(
        check(&validator, &token),
        Err(JwtSvidError::Jose(JoseError::UnsupportedAlgorithm {
            alg: "HS256".into(),
            allowed: SVID_ALGORITHMS
        }))
    );
}

#[test]
fn key_id_must_be_present_and_known() {
    let (signer, validator) = setup();
    assert!(check(&validator, &signer.token(&claims())).is_ok());
    let token = signer.sign(&json!({"alg": "ES256", "typ": "JWT"}), &claims());
    assert_eq!(
        check(&validator, &token),
        Err(JwtSvidError::Jose(JoseError::MissingKeyId))
    );
    let token = signer.sign(&json!({"alg": "ES256", "kid": "k2"}), &claims());
    assert_eq!(
        check(&validator, &token),
        Err(JwtSvidError::UnknownKeyId {
            kid: "k2".into(),
            trust_domain: td()
        })
    );
    let token = signer.sign(&json!({"alg": "ES256", "kid": 1}), &claims());
    assert_eq!(
        check(&validator, &token),
        Err(JwtSvidError::Jose(JoseError::InvalidHeaderType {
            name: "kid",
            expected: "a non-empty string"
        }))
    );
}

#[test]
fn algorithm_must_fit_the_key_type() {
    let (signer, validator) = setup();
    assert!(check(&validator, &signer.token(&claims())).is_ok());
    for alg in ["RS256", "PS256", "ES384"] {
        let token = signer.sign(&json!({"alg": alg, "kid": "k1"}), &claims());
        assert_eq!(
            check(&validator, &token),
            Err(JwtSvidError::Jose(JoseError::AlgorithmKeyMismatch {
                alg: JwsAlgorithm::from_name(alg).unwrap(),
                kid: "k1".into(),
                key_type: KeyType::EcP256,
            })),
            "{alg}"
        );
    }
}

#[test]
fn tampered_payload_fails_the_signature() {
    let (signer, validator) = setup();
    let token = signer.token(&claims());
    assert!(check(&validator, &token).is_ok());
    let [header, _, signature] = token.split('.').collect::<Vec<_>>()[..] else {
        unreachable!()
    };
    let forged = with(claims(), "sub", "spiffe://example.org/admin".into());
    let tampered = format!("{header}.{}.{signature}", b64(forged.to_string()));
    assert_eq!(
        check(&validator, &tampered),
        Err(JwtSvidError::Jose(JoseError::BadSignature {
            kid: "k1".into()
        }))
    );
    // Signed by another key that claims the same kid.
    let impostor = EcSigner::p256("k1");
    assert_eq!(
        check(&validator, &impostor.token(&claims())),
        Err(JwtSvidError::Jose(JoseError::BadSignature {
            kid: "k1".into()
        }))
    );
    let truncated = format!("{header}.{}.{}", token.split('.').nth(1).unwrap(), "");
    assert_eq!(
        check(&validator, &truncated),
        Err(JwtSvidError::Jose(JoseError::BadSignature {
            kid: "k1".into()
        }))
    );
}

#[test]
fn audience_must_contain_the_expected_one() {
    let (signer, validator) = setup();
    let token = |aud: Value| signer.token(&with(claims(), "aud", aud));
    assert!(check(&validator, &token("billing".into())).is_ok());
    assert_eq!(
        check(&validator, &token("reports".into())),
        Err(JwtSvidError::WrongAudience {
            expected: "billing".into(),
            actual: vec!["reports".into()]
        })
    );
    let svid = check(&validator, &token(json!(["reports", "billing"]))).unwrap();
    assert_eq!(svid.audience, ["reports", "billing"]);
    assert_eq!(
        check(&validator, &token(json!(["reports", "ledger"]))),
        Err(JwtSvidError::WrongAudience {
            expected: "billing".into(),
            actual: vec!["reports".into(), "ledger".into()]
        })
    );
    // Case matters: audiences are compared exactly.
    assert!(matches!(
        check(&validator, &token("Billing".into())),
        Err(JwtSvidError::WrongAudience { .. })
    ));
    for bad in [json!([]), json!(["billing", 3]), json!(7), Value::Null] {
        assert!(
            matches!(
                check(&validator, &token(bad.clone())),
                Err(JwtSvidError::InvalidClaimType { claim: "aud", .. })
            ),
            "{bad}"
        );
    }
    assert_eq!(
        check(&validator, &signer.token(&without(claims(), "aud"))),
        Err(JwtSvidError::MissingClaim { claim: "aud" })
    );
}

#[test]
fn exp_is_required_and_an_integer() {
    let (signer, validator) = setup();
    assert!(check(&validator, &signer.token(&claims())).is_ok());
    assert_eq!(
        check(&validator, &signer.token(&without(claims(), "exp"))),
        Err(JwtSvidError::MissingClaim { claim: "exp" })
    );
    for bad in [
        json!((NOW + 300).to_string()),
        json!(NOW as f64 + 300.5),
        json!(1.8e9),
        json!(u64::MAX),
        Value::Null,
    ] {
        assert!(
            matches!(
                check(
                    &validator,
                    &signer.token(&with(claims(), "exp", bad.clone()))
                ),
                Err(JwtSvidError::InvalidClaimType { claim: "exp", .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn nbf_and_iat_must_not_be_in_the_future() {
    let (signer, validator) = setup();
    let token = |name: &str, t: i64| signer.token(&with(claims(), name, t.into()));
    assert!(check(&validator, &token("nbf", NOW + 30)).is_ok());
    assert_eq!(
        check(&validator, &token("nbf", NOW + 31)),
        Err(JwtSvidError::NotYetValid {
            not_before: NOW + 31,
            now: NOW
        })
    );
    assert!(check(&validator, &token("iat", NOW + 30)).is_ok());
    assert_eq!(
        check(&validator, &token("iat", NOW + 3600)),
        Err(JwtSvidError::IssuedInFuture {
            issued_at: NOW + 3600,
            now: NOW
        })
    );
    assert!(matches!(
        check(
            &validator,
            &signer.token(&with(claims(), "iat", "yesterday".into()))
        ),
        Err(JwtSvidError::InvalidClaimType { claim: "iat", .. })
    ));
    assert!(matches!(
        check(
            &validator,
            &signer.token(&with(claims(), "nbf", json!(1.5)))
        ),
        Err(JwtSvidError::InvalidClaimType { claim: "nbf", .. })
    ));
}

#[test]
fn only_alg_kid_typ_headers_are_allowed() {
    let (signer, validator) = setup();
    assert!(check(&validator, &signer.token(&claims())).is_ok());
    for name in ["jku", "jwk", "x5u", "x5c", "crit", "cty", "b64"] {
        let mut header = json!({"alg": "ES256", "kid": "k1"});
        header[name] = json!("https://attacker.example/keys");
        assert_eq!(
            check(&validator, &signer.sign(&header, &claims())),
            Err(JwtSvidError::Jose(JoseError::UnexpectedHeader {
                name: name.into(),
                allowed: SVID_HEADERS
            })),
            "{name}"
        );
    }
    let token = signer.sign(
        &json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
        &claims(),
    );
    assert_eq!(
        check(&validator, &token),
        Err(JwtSvidError::Jose(JoseError::UnsupportedType {
            typ: "at+jwt".into(),
            allowed: &["JWT", "JOSE"]
        }))
    );
    let token = signer.sign(&json!({"kid": "k1"}), &claims());
    assert_eq!(
        check(&validator, &token),
        Err(JwtSvidError::Jose(JoseError::MissingAlgorithm))
    );
}

#[test]
fn repeated_header_names_are_refused() {
    let (signer, validator) = setup();
    let sign_raw = |header: &str| {
        let input = format!("{}.{}", b64(header), b64(claims().to_string()));
        let sig = signer
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig))
    };
    assert!(check(&validator, &sign_raw(r#"{"alg":"ES256","kid":"k1"}"#)).is_ok());
    assert_eq!(
        check(
            &validator,
            &sign_raw(r#"{"alg":"none","alg":"ES256","kid":"k1"}"#)
        ),
        Err(JwtSvidError::Jose(JoseError::DuplicateMember {
            part: TokenPart::Header,
            name: "alg".into()
        }))
    );
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let (signer, validator) = setup();
    let token = signer.token(&claims());
    assert!(check(&validator, &token).is_ok());
    let big = "a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1);
    assert_eq!(
        check(&validator, &big),
        Err(JwtSvidError::Jose(JoseError::TooLarge {
            len: DEFAULT_MAX_TOKEN_BYTES + 1,
            max: DEFAULT_MAX_TOKEN_BYTES
        }))
    );
    let padded = with(claims(), "pad", "x".repeat(DEFAULT_MAX_TOKEN_BYTES).into());
    assert!(matches!(
        check(&validator, &signer.token(&padded)),
        Err(JwtSvidError::Jose(JoseError::TooLarge { .. }))
    ));
    let tight = validator.with_max_token_bytes(token.len());
    assert!(check(&tight, &token).is_ok());
    let tighter = tight.with_max_token_bytes(token.len() - 1);
    assert_eq!(
        check(&tighter, &token),
        Err(JwtSvidError::Jose(JoseError::TooLarge {
            len: token.len(),
            max: token.len() - 1
        }))
    );
}

#[test]
fn subject_must_be_a_spiffe_id_in_the_trust_domain() {
    let (signer, validator) = setup();
    assert!(check(&validator, &signer.token(&claims())).is_ok());
    let token = signer.token(&with(
        claims(),
        "sub",
        "spiffe://other.org/ns/billing".into(),
    ));
    assert_eq!(
        check(&validator, &token),
        Err(JwtSvidError::WrongTrustDomain {
            expected: td(),
            actual: SpiffeId::parse("spiffe://other.org/ns/billing").unwrap()
        })
    );
    // A look-alike trust domain is another trust domain.
    let token = signer.token(&with(claims(), "sub", "spiffe://example.org.evil/x".into()));
    assert!(matches!(
        check(&validator, &token),
        Err(JwtSvidError::WrongTrustDomain { .. })
    ));
    let token = signer.token(&with(claims(), "sub", "spiffe://example.org/a/../b".into()));
    assert_eq!(
        check(&validator, &token),
        Err(JwtSvidError::BadSubject {
            reason: SpiffeIdError::DotSegment {
                segment: "..",
                position: 23
            }
        })
    );
    assert_eq!(
        check(&validator, &signer.token(&without(claims(), "sub"))),
        Err(JwtSvidError::MissingClaim { claim: "sub" })
    );
}

#[test]
fn malformed_tokens_are_refused() {
    let (signer, validator) = setup();
    let token = signer.token(&claims());
    assert!(check(&validator, &token).is_ok());
    let parts: Vec<&str> = token.split('.').collect();

    let two = format!("{}.{}", parts[0], parts[1]);
    assert_eq!(
        check(&validator, &two),
        Err(JwtSvidError::Jose(JoseError::WrongPartCount { count: 2 }))
    );
    let four = format!("{token}.x");
    assert_eq!(
        check(&validator, &four),
        Err(JwtSvidError::Jose(JoseError::WrongPartCount { count: 4 }))
    );
    assert_eq!(
        check(&validator, ""),
        Err(JwtSvidError::Jose(JoseError::WrongPartCount { count: 1 }))
    );

    let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
    assert_eq!(
        check(&validator, &padded),
        Err(JwtSvidError::Jose(JoseError::InvalidBase64 {
            part: TokenPart::Header
        }))
    );
    let std_alphabet = format!("{}.{}.{}+", parts[0], parts[1], parts[2]);
    assert_eq!(
        check(&validator, &std_alphabet),
        Err(JwtSvidError::Jose(JoseError::InvalidBase64 {
            part: TokenPart::Signature
        }))
    );
    // Right alphabet, impossible length (one leftover character).
    let bad_len = format!("{}.{}.{}", parts[0], parts[1], "A");
    assert_eq!(
        check(&validator, &bad_len),
        Err(JwtSvidError::Jose(JoseError::InvalidBase64 {
            part: TokenPart::Signature
        }))
    );
    let not_json = format!("{}.{}.{}", b64("{alg"), parts[1], parts[2]);
    assert_eq!(
        check(&validator, &not_json),
        Err(JwtSvidError::Jose(JoseError::InvalidJson {
            part: TokenPart::Header
        }))
    );
    let array = format!("{}.{}.{}", b64("[]"), parts[1], parts[2]);
    assert_eq!(
        check(&validator, &array),
        Err(JwtSvidError::Jose(JoseError::NotAnObject {
            part: TokenPart::Header
        }))
    );
    let header = json!({"alg": "ES256", "kid": "k1"});
    let input = format!("{}.{}", b64(header.to_string()), b64("\"just a string\""));
    let sig = signer
        .key
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap();
    assert_eq!(
        check(&validator, &format!("{input}.{}", b64(sig))),
        Err(JwtSvidError::Jose(JoseError::NotAnObject {
            part: TokenPart::Claims
        }))
    );
}

#[test]
fn es384_rs256_and_ps256_verify() {
    let p384 = EcSigner::new(&ECDSA_P384_SHA384_FIXED_SIGNING, "p384");
    let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let (_, rsa_public) =
        <x509_parser::public_key::RSAPublicKey as x509_parser::prelude::FromDer<_>>::from_der(
            rsa.public_key().as_ref(),
        )
        .unwrap();
    let rsa_authority = JwtAuthority {
        key_id: "rsa".into(),
        public_key: JwtPublicKey::Rsa {
            n: rsa_public.modulus.to_vec(),
            e: rsa_public.exponent.to_vec(),
        },
    };
    let validator = JwtSvidValidator::new(td(), &[p384.authority(), rsa_authority]).unwrap();

    let token = p384.sign(&json!({"alg": "ES384", "kid": "p384"}), &claims());
    assert_eq!(check(&validator, &token).unwrap().key_id, "p384");
    let token = p384.sign(&json!({"alg": "ES256", "kid": "p384"}), &claims());
    assert!(matches!(
        check(&validator, &token),
        Err(JwtSvidError::Jose(JoseError::AlgorithmKeyMismatch {
            key_type: KeyType::EcP384,
            ..
        }))
    ));

    let rsa_token = |alg: &str, padding: &'static dyn aws_lc_rs::signature::RsaEncoding| {
        let input = format!(
            "{}.{}",
            b64(json!({"alg": alg, "kid": "rsa"}).to_string()),
            b64(claims().to_string())
        );
        let mut sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .unwrap();
        format!("{input}.{}", b64(sig))
    };
    assert!(check(&validator, &rsa_token("RS256", &RSA_PKCS1_SHA256)).is_ok());
    assert!(check(&validator, &rsa_token("PS256", &RSA_PSS_SHA256)).is_ok());
    // A PKCS#1 v1.5 signature presented as PSS must not verify.
    assert_eq!(
        check(&validator, &rsa_token("PS256", &RSA_PKCS1_SHA256)),
        Err(JwtSvidError::Jose(JoseError::BadSignature {
            kid: "rsa".into()
        }))
    );
    assert!(matches!(
        check(&validator, &rsa_token("ES256", &RSA_PKCS1_SHA256)),
        Err(JwtSvidError::Jose(JoseError::AlgorithmKeyMismatch {
            key_type: KeyType::Rsa { modulus_bits: 2048 },
            ..
        }))
    ));
}

#[test]
fn validator_construction_checks_keys() {
    let signer = EcSigner::p256("k1");
    assert!(JwtSvidValidator::new(td(), &[signer.authority()]).is_ok());
    assert_eq!(
        JwtSvidValidator::new(td(), &[]).unwrap_err(),
        JwtSvidError::NoAuthorities { trust_domain: td() }
    );
    assert_eq!(
        JwtSvidValidator::new(td(), &[signer.authority(), signer.authority()]).unwrap_err(),
        JwtSvidError::DuplicateKeyId { kid: "k1".into() }
    );
    let off_curve = JwtAuthority {
        key_id: "bad".into(),
        public_key: JwtPublicKey::EcP256 {
            x: [1; 32],
            y: [2; 32],
        },
    };
    assert_eq!(
        JwtSvidValidator::new(td(), &[off_curve]).unwrap_err(),
        JwtSvidError::InvalidKey {
            kid: "bad".into(),
            reason: KeyError::NotOnCurve { curve: "P-256" }
        }
    );
    let small_rsa = JwtAuthority {
        key_id: "small".into(),
        public_key: JwtPublicKey::Rsa {
            n: vec![0xff; 128],
            e: vec![1, 0, 1],
        },
    };
    assert_eq!(
        JwtSvidValidator::new(td(), &[small_rsa]).unwrap_err(),
        JwtSvidError::InvalidKey {
            kid: "small".into(),
            reason: KeyError::RsaModulusSize { bits: 1024 }
        }
    );
}

#[test]
fn errors_and_debug_never_contain_the_token() {
    let (signer, validator) = setup();
    let token = signer.token(&with(claims(), "exp", (NOW - 3600).into()));
    let err = check(&validator, &token).unwrap_err();
    let signature = token.rsplit('.').next().unwrap();
    for text in [
        err.to_string(),
        format!("{err:?}"),
        format!("{validator:?}"),
    ] {
        assert!(!text.contains(signature), "{text}");
        assert!(!text.contains(token.split('.').nth(1).unwrap()), "{text}");
    }
    assert_eq!(
        err.to_string(),
        "the token expired at 2025-12-31T23:00:00Z (unix 1767222000) \
         (now 2026-01-01T00:00:00Z (unix 1767225600))"
    );
    // Attacker-chosen names are shortened before they are quoted.
    let long = "k".repeat(1000);
    let token = signer.sign(&json!({"alg": "ES256", "kid": long}), &claims());
    let JwtSvidError::UnknownKeyId { kid, .. } = check(&validator, &token).unwrap_err() else {
        panic!()
    };
    assert!(kid.len() < 100);
}

#[test]
fn insecure_decode_reads_without_verifying() {
    let (signer, _) = setup();
    let token = signer.token(&claims());
    let (header, body) = insecure_decode_unverified(&token).unwrap();
    assert_eq!(header.alg, "ES256");
    assert_eq!(header.kid.as_deref(), Some("k1"));
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(body, claims());
    // It reports, rather than judges, the algorithm...
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none"}).to_string()),
        b64(claims().to_string())
    );
    assert_eq!(insecure_decode_unverified(&unsigned).unwrap().0.alg, "none");
    // ...but keeps the structure checks.
    let jku = signer.sign(&json!({"alg": "ES256", "jku": "x"}), &claims());
    assert_eq!(
        insecure_decode_unverified(&jku).unwrap_err(),
        JwtSvidError::Jose(JoseError::UnexpectedHeader {
            name: "jku".into(),
            allowed: SVID_HEADERS
        })
    );
    assert!(matches!(
        insecure_decode_unverified(&"a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1)),
        Err(JwtSvidError::Jose(JoseError::TooLarge { .. }))
    ));
    assert_eq!(
        insecure_decode_unverified("a.b").unwrap_err(),
        JwtSvidError::Jose(JoseError::WrongPartCount { count: 2 })
    );
}
