//! JWT-SVIDs, verified independently with aws-lc-rs from the published authority.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use mayfly_ca::CaError;
use mayfly_sdk::bundle::JwtPublicKey;
use mayfly_sdk::jwt::Audience;
use serde_json::{Value, json};

fn decode_json(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn object_keys(value: &Value) -> Vec<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn signed_token_verifies_with_the_published_key_and_has_exact_header_and_claims() {
    let (_dir, ca) = new_ca();
    let signer = ca.jwt_signer();
    let subject = spiffe_id("spiffe://example.org/billing/api");
    let audience = Audience::new("spiffe://example.org/reports").unwrap();
    let issued_at = common::T0_SECONDS as i64;
    let signed = signer
        .sign(&subject, &audience, issued_at, issued_at + 300)
        .unwrap();

    let parts: Vec<&str> = signed.token.split('.').collect();
    assert_eq!(parts.len(), 3);

    // Signature: verified from the authority's x/y alone, over `header.claims`.
    let authority = signer.authority();
    assert_eq!(authority.key_id, signer.key_id());
    let JwtPublicKey::EcP256 { x, y } = authority.public_key else {
        panic!("expected a P-256 key, got {:?}", authority.public_key);
    };
    let mut point = vec![0x04];
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert_eq!(signature.len(), 64, "fixed-size r || s");
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    let public_key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
    public_key
        .verify(signing_input.as_bytes(), &signature)
        .unwrap();

    // Negative control: the same signature over altered claims fails.
    let forged_claims = URL_SAFE_NO_PAD.encode(
        json!({"sub": "spiffe://example.org/admin", "aud": "spiffe://example.org/reports",
               "exp": issued_at + 300, "iat": issued_at, "jti": "x"})
        .to_string(),
    );
    let forged_input = format!("{}.{}", parts[0], forged_claims);
    assert!(
        public_key
            .verify(forged_input.as_bytes(), &signature)
            .is_err()
    );

    // Header: exactly alg, kid, typ.
    let header = decode_json(parts[0]);
    assert_eq!(
        header,
        json!({"alg": "ES256", "kid": signer.key_id(), "typ": "JWT"})
    );
    assert_eq!(object_keys(&header).len(), 3);

    // Claims: exactly sub, aud (a single string), exp, iat, jti.
    let claims = decode_json(parts[1]);
    let mut keys = object_keys(&claims);
    keys.sort();
    assert_eq!(keys, ["aud", "exp", "iat", "jti", "sub"]);
    assert_eq!(claims["sub"], "spiffe://example.org/billing/api");
    assert_eq!(claims["aud"], "spiffe://example.org/reports");
    assert!(claims["aud"].is_string());
    assert_eq!(claims["exp"], issued_at + 300);
    assert_eq!(claims["iat"], issued_at);
    assert_eq!(claims["jti"], signed.jti.as_str());
    assert_eq!(URL_SAFE_NO_PAD.decode(&signed.jti).unwrap().len(), 16);
}

#[test]
fn key_id_is_the_rfc7638_thumbprint() {
    let (_dir, ca) = new_ca();
    let signer = ca.jwt_signer();
    let JwtPublicKey::EcP256 { x, y } = signer.authority().public_key else {
        panic!("expected a P-256 key");
    };
    // Required members only, lexicographic order (a BTreeMap sorts them), no whitespace.
    let members: BTreeMap<&str, String> = [
        ("kty", "EC".to_string()),
        ("crv", "P-256".to_string()),
        ("x", URL_SAFE_NO_PAD.encode(x)),
        ("y", URL_SAFE_NO_PAD.encode(y)),
    ]
    .into_iter()
    .collect();
    let canonical = serde_json::to_string(&members).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    assert_eq!(signer.key_id(), URL_SAFE_NO_PAD.encode(digest));
}

#[test]
fn every_token_gets_its_own_jti() {
    let (_dir, ca) = new_ca();
    let subject = spiffe_id("spiffe://example.org/w");
    let audience = Audience::new("reports").unwrap();
    let first = ca.jwt_signer().sign(&subject, &audience, 100, 200).unwrap();
    let second = ca.jwt_signer().sign(&subject, &audience, 100, 200).unwrap();
    assert_ne!(first.jti, second.jti);
    assert_ne!(first.token, second.token);
}

#[test]
fn expiry_must_follow_issue_time() {
    let (_dir, ca) = new_ca();
    let subject = spiffe_id("spiffe://example.org/w");
    let audience = Audience::new("reports").unwrap();
    assert!(ca.jwt_signer().sign(&subject, &audience, 100, 101).is_ok());
    for expires_at in [100, 99] {
        let error = ca
            .jwt_signer()
            .sign(&subject, &audience, 100, expires_at)
            .unwrap_err();
        assert!(
            matches!(error, CaError::InvalidTokenLifetime { .. }),
            "{error:?}"
        );
        assert!(error.is_caller_error());
    }
}

#[test]
fn debug_never_prints_the_token() {
    let (_dir, ca) = new_ca();
    let subject = spiffe_id("spiffe://example.org/w");
    let audience = Audience::new("reports").unwrap();
    let signed = ca.jwt_signer().sign(&subject, &audience, 100, 200).unwrap();
    let debug = format!("{signed:?}");
    assert!(debug.contains(&signed.jti));
    for part in signed.token.split('.') {
        assert!(!debug.contains(part));
    }
}
