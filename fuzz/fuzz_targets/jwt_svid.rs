//! JWT-SVID validation (`JwtSvidValidator::validate`) and
//! `insecure_decode_unverified` on hostile tokens: never panic, and what
//! validation accepts meets every promise of the module docs.
//!
//! Random bytes almost never carry a valid signature, which would leave the
//! claim checks unfuzzed; so half the inputs are a header and claims chosen
//! by the fuzzer and signed here with the key the validator trusts.

#![no_main]

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mayfly_sdk::TrustDomain;
use mayfly_sdk::bundle::{JwtAuthority, JwtPublicKey};
use mayfly_sdk::jwt::{Audience, DEFAULT_LEEWAY, JwtSvidValidator, insecure_decode_unverified};
use serde_json::{Map, Value, json};

/// PKCS#8 DER (base64) of a P-256 key made for this target and nothing else.
/// Fixed rather than generated, so corpus entries signed with it stay valid
/// from one run to the next.
const SIGNING_KEY_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzlEaLbwA4+25yxEGbHmUuO6dTEi7aFVb4cdHZ6SA5jehRANCAASch8M0xJUEEgi6jdLeFr0zbwlcTjyvWBLL8a+DwYKToBJGwhDcqQLnbgy2nXiyw+ZVrVprG9G9V32EfKKM7OP4";
const KEY_ID: &str = "k1";
const TRUST_DOMAIN: &str = "example.org";
const FALLBACK_AUDIENCE: &str = "billing";
/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;

struct Fixture {
    key: EcdsaKeyPair,
    validator: JwtSvidValidator,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pkcs8 = STANDARD
            .decode(SIGNING_KEY_PKCS8)
            .expect("fixture key is base64");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .expect("fixture key is a P-256 PKCS#8 key");
        // The uncompressed point: 0x04 || x || y.
        let point = key.public_key().as_ref();
        let authority = JwtAuthority {
            key_id: KEY_ID.to_owned(),
            public_key: JwtPublicKey::EcP256 {
                x: point[1..33].try_into().expect("32-byte x"),
                y: point[33..65].try_into().expect("32-byte y"),
            },
        };
        let trust_domain = TrustDomain::new(TRUST_DOMAIN).expect("valid trust domain");
        let validator =
            JwtSvidValidator::new(trust_domain, &[authority]).expect("a valid authority");
        let fixture = Fixture { key, validator };

        // Positive control: a target whose validator refuses everything
        // would fuzz nothing past the signature.
        let claims = json!({
            "sub": "spiffe://example.org/ns/billing",
            "aud": FALLBACK_AUDIENCE,
            "exp": NOW + 300,
            "iat": NOW,
        });
        let token = fixture.sign(STANDARD_HEADER.as_bytes(), claims.to_string().as_bytes());
        let audience = Audience::new(FALLBACK_AUDIENCE).expect("valid audience");
        fixture
            .validator
            .validate(&token, &audience, NOW)
            .expect("the positive control validates");
        fixture
    })
}

impl Fixture {
    fn sign(&self, header: &[u8], claims: &[u8]) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .expect("ECDSA signing does not fail");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

const STANDARD_HEADER: &str = r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#;

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    /// A token exactly as a caller presents it.
    Presented {
        token: &'a str,
        audience: &'a str,
        now: i64,
    },
    /// A header and claims the fuzzer writes, signed with the trusted key.
    Signed {
        header: Header<'a>,
        claims: Claims<'a>,
        audience: &'a str,
        now: Now,
    },
}

#[derive(Arbitrary, Debug)]
enum Header<'a> {
    /// `{"alg":"ES256","kid":"k1","typ":"JWT"}`
    Standard,
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum Claims<'a> {
    Fields {
        sub: Subject<'a>,
        aud: Claim<'a>,
        exp: Claim<'a>,
        nbf: Claim<'a>,
        iat: Claim<'a>,
        jti: Claim<'a>,
    },
    /// Any bytes: duplicate names, odd numbers, not JSON at all.
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum Subject<'a> {
    /// `spiffe://example.org` followed by this.
    InTrustDomain(&'a str),
    Other(Claim<'a>),
}

#[derive(Arbitrary, Debug)]
enum Claim<'a> {
    Absent,
    /// The audience the token is validated for.
    TheAudience,
    /// Seconds relative to the validation time.
    Relative(i32),
    Integer(i64),
    Unsigned(u64),
    Float(f64),
    Text(&'a str),
    Texts(Vec<&'a str>),
    Bool(bool),
    Null,
}

#[derive(Arbitrary, Debug)]
enum Now {
    Fixed,
    At(i64),
}

fuzz_target!(|input: Input<'_>| {
    let fixture = fixture();
    match input {
        Input::Presented {
            token,
            audience,
            now,
        } => check(fixture, token, audience, now),
        Input::Signed {
            header,
            claims,
            audience,
            now,
        } => {
            let now = match now {
                Now::Fixed => NOW,
                Now::At(now) => now,
            };
            let header = match header {
                Header::Standard => STANDARD_HEADER.as_bytes(),
                Header::Raw(bytes) => bytes,
            };
            let claims = match claims {
                Claims::Raw(bytes) => bytes.to_vec(),
                Claims::Fields {
                    sub,
                    aud,
                    exp,
                    nbf,
                    iat,
                    jti,
                } => {
                    let sub = match sub {
                        Subject::InTrustDomain(path) => {
                            Some(Value::String(format!("spiffe://{TRUST_DOMAIN}{path}")))
                        }
                        Subject::Other(claim) => claim.to_json(audience, now),
                    };
                    let mut object = Map::new();
                    for (name, value) in [
                        ("sub", sub),
                        ("aud", aud.to_json(audience, now)),
                        ("exp", exp.to_json(audience, now)),
                        ("nbf", nbf.to_json(audience, now)),
                        ("iat", iat.to_json(audience, now)),
                        ("jti", jti.to_json(audience, now)),
                    ] {
                        if let Some(value) = value {
                            object.insert(name.to_owned(), value);
                        }
                    }
                    Value::Object(object).to_string().into_bytes()
                }
            };
            let token = fixture.sign(header, &claims);
            check(fixture, &token, audience, now);
        }
    }
});

impl Claim<'_> {
    fn to_json(&self, audience: &str, now: i64) -> Option<Value> {
        Some(match self {
            Claim::Absent => return None,
            Claim::TheAudience => Value::String(audience.to_owned()),
            Claim::Relative(offset) => Value::from(now.saturating_add(i64::from(*offset))),
            Claim::Integer(n) => Value::from(*n),
            Claim::Unsigned(n) => Value::from(*n),
            // Non-finite floats become null.
            Claim::Float(f) => Value::from(*f),
            Claim::Text(text) => Value::String((*text).to_owned()),
            Claim::Texts(texts) => texts
                .iter()
                .map(|t| Value::String((*t).to_owned()))
                .collect(),
            Claim::Bool(b) => Value::Bool(*b),
            Claim::Null => Value::Null,
        })
    }
}

fn check(fixture: &Fixture, token: &str, audience: &str, now: i64) {
    // The audience is the relying party's own setting; parse it too.
    let audience = match Audience::new(audience) {
        Ok(parsed) => {
            assert_eq!(parsed.as_str(), audience);
            parsed
        }
        Err(_) => Audience::new(FALLBACK_AUDIENCE).expect("valid audience"),
    };
    let decoded = insecure_decode_unverified(token);
    let Ok(svid) = fixture.validator.validate(token, &audience, now) else {
        return;
    };

    // Validation applies every structure check the decoder does, and more.
    let (header, _claims) = decoded.expect("a validated token also decodes");
    assert_eq!(header.alg, "ES256");
    assert_eq!(header.kid.as_deref(), Some(KEY_ID));
    assert!(header.typ.is_none_or(|typ| typ == "JWT" || typ == "JOSE"));

    assert_eq!(svid.key_id, KEY_ID);
    assert_eq!(svid.spiffe_id.trust_domain_name(), TRUST_DOMAIN);
    assert!(svid.audience.iter().any(|a| a == audience.as_str()));
    let leeway = i64::try_from(DEFAULT_LEEWAY.as_secs()).expect("small leeway");
    assert!(
        now <= svid.expires_at.saturating_add(leeway),
        "accepted an expired token"
    );
    if let Some(issued_at) = svid.issued_at {
        assert!(
            issued_at <= now.saturating_add(leeway),
            "accepted a token issued in the future"
        );
    }
}
