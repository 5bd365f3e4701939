use serde_json::json;

use super::*;
use crate::attest::testing::{TestKey, encode_token, hs256_token, jwks_of};

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn config(jwks: String) -> OidcIssuerConfig {
    OidcIssuerConfig {
        alias: "gh".into(),
        issuer: ISSUER.into(),
        jwks_file: None,
        discovery_url: None,
        jwks: Some(jwks),
        audience: "mayfly".into(),
        claims: default_claims(),
        identity_claims: default_identity_claims(),
        max_token_age: None,
        environments: None,
    }
}

fn attestor(key: &TestKey) -> OidcAttestor {
    OidcAttestor::new(&[config(jwks_of(&[key]))]).unwrap()
}

/// What a GitHub Actions ID token carries.
fn claims() -> Value {
    json!({
        "jti": "8f3c9a2e-0000-4000-8000-000000000002",
        "sub": "repo:org/app:environment:prod",
        "aud": "mayfly",
        "ref": "refs/heads/main",
        "sha": "d6b2f1c0",
        "repository": "org/app",
        "repository_owner": "org",
        "repository_id": 74269537,
        "run_id": "1234",
        "actor": "octocat",
        "workflow": "Deploy to prod",
        "workflow_ref": "org/app/.github/workflows/deploy.yml@refs/heads/main",
        "environment": "prod",
        "ref_protected": true,
        "iss": ISSUER,
        "nbf": NOW - 60,
        "exp": NOW + 300,
        "iat": NOW - 60
    })
}

fn with(name: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[name] = value;
    claims
}

async fn assert_control(attestor: &OidcAttestor, key: &TestKey) {
    attestor.attest(&key.token(&claims()), NOW).await.unwrap();
}

async fn refusal(claims: Value) -> AttestError {
    let key = TestKey::rsa(0, "gh-key");
    let attestor = attestor(&key);
    assert_control(&attestor, &key).await;
    attestor.attest(&key.token(&claims), NOW).await.unwrap_err()
}

fn names(selectors: &[Selector]) -> Vec<&str> {
    selectors.iter().map(Selector::as_str).collect()
}

fn selectors(texts: &[&str]) -> Vec<Selector> {
    texts
        .iter()
        .map(|text| Selector::parse(text).unwrap())
        .collect()
}

#[tokio::test]
async fn valid_token_yields_its_selectors() {
    let key = TestKey::rsa(0, "gh-key");
    let token = key.token(&claims());
    let attestation = attestor(&key).attest(&token, NOW).await.unwrap();
    assert_eq!(attestation.attestor, "oidc");
    assert_eq!(attestation.subject, "oidc:gh:repo:org/app:environment:prod");
    assert_eq!(
        names(&attestation.selectors),
        [
            "oidc:gh:environment:prod",
            "oidc:gh:ref:refs/heads/main",
            "oidc:gh:repository:org/app",
            "oidc:gh:sub:repo:org/app:environment:prod",
            "oidc:gh:workflow_ref:org/app/.github/workflows/deploy.yml@refs/heads/main",
        ]
    );
    assert_eq!(attestation.evidence_sha256, sha256_hex(token.as_bytes()));
    let replay = attestation.replay.unwrap();
    assert_eq!(
        replay.key,
        "oidc:gh:jti:8f3c9a2e-0000-4000-8000-000000000002"
    );
    assert_eq!(replay.expires_at, NOW + 300 + 30);
}

#[tokio::test]
async fn numbers_and_booleans_are_rendered_arrays_and_unrepresentable_values_skipped() {
    let key = TestKey::p256("gh-key");
    let mut config = config(jwks_of(&[&key]));
    config.claims = [
        "sub",
        "repository_id",
        "ref_protected",
        "workflow",
        "groups",
    ]
    .map(String::from)
    .to_vec();
    let attestor = OidcAttestor::new(&[config]).unwrap();
    let mut claims = with("groups", json!(["a", "b"]));
    claims.as_object_mut().unwrap().remove("jti");
    let token = key.token(&claims);
    let attestation = attestor.attest(&token, NOW).await.unwrap();
    assert_eq!(
        names(&attestation.selectors),
        [
            "oidc:gh:ref_protected:true",
            "oidc:gh:repository_id:74269537",
            "oidc:gh:sub:repo:org/app:environment:prod",
        ]
    );
    let signed = token.rsplit_once('.').unwrap().0;
    assert_eq!(
        attestation.replay.unwrap().key,
        format!("oidc:gh:sha256:{}", sha256_hex(signed.as_bytes()))
    );
}

#[tokio::test]
async fn expired() {
    let err = refusal(with("exp", json!(NOW - 60))).await;
    assert_eq!(
        err,
        AttestError::Expired {
            expired_at: NOW - 60,
            now: NOW
        }
    );
}

#[tokio::test]
async fn not_yet_valid() {
    let err = refusal(with("nbf", json!(NOW + 31))).await;
    assert_eq!(
        err,
        AttestError::NotYetValid {
            not_before: NOW + 31,
            now: NOW
        }
    );
}

#[tokio::test]
async fn wrong_audience() {
    let err = refusal(with("aud", json!("https://github.com/org"))).await;
    assert_eq!(
        err,
        AttestError::WrongAudience {
            expected: "mayfly".into(),
            found: vec!["https://github.com/org".into()]
        }
    );
    let err = refusal({
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove("aud");
        claims
    })
    .await;
    assert!(matches!(err, AttestError::WrongAudience { found, .. } if found.is_empty()));
}

#[tokio::test]
async fn wrong_issuer() {
    let err = refusal(with("iss", json!("https://gitlab.example.com"))).await;
    assert_eq!(
        err,
        AttestError::UntrustedIssuer {
            found: "https://gitlab.example.com".into()
        }
    );
}

#[tokio::test]
async fn unknown_kid() {
    let key = TestKey::rsa(0, "gh-key");
    let attestor = attestor(&key);
    assert_control(&attestor, &key).await;
    let err = attestor
        .attest(&TestKey::rsa(0, "other-kid").token(&claims()), NOW)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AttestError::UnknownKeyId {
            kid: "other-kid".into(),
            issuer: ISSUER.into()
        }
    );
}

#[tokio::test]
async fn signed_by_a_key_not_in_the_jwks() {
    let key = TestKey::rsa(0, "gh-key");
    let attestor = attestor(&key);
    assert_control(&attestor, &key).await;
    let err = attestor
        .attest(&TestKey::rsa(1, "gh-key").token(&claims()), NOW)
        .await
        .unwrap_err();
    assert_eq!(err, AttestError::BadSignature);

    // EC too: a P-256 key under a trusted P-256 kid.
    let ec = TestKey::p256("ec");
    let attestor = OidcAttestor::new(&[config(jwks_of(&[&ec]))]).unwrap();
    attestor.attest(&ec.token(&claims()), NOW).await.unwrap();
    let err = attestor
        .attest(&TestKey::p256("ec").token(&claims()), NOW)
        .await
        .unwrap_err();
    assert_eq!(err, AttestError::BadSignature);
}

#[tokio::test]
async fn alg_none() {
    let key = TestKey::rsa(0, "gh-key");
    let attestor = attestor(&key);
    assert_control(&attestor, &key).await;
    for alg in ["none", "None", "NONE"] {
        let token = encode_token(&json!({"alg": alg, "kid": "gh-key"}), &claims(), b"");
        let err = attestor.attest(&token, NOW).await.unwrap_err();
        assert!(
            matches!(err, AttestError::UnsupportedAlgorithm { .. }),
            "{alg}: {err}"
        );
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_never_verified() {
    let key = TestKey::rsa(0, "gh-key");
    let attestor = attestor(&key);
    assert_control(&attestor, &key).await;
    let token = hs256_token("gh-key", &claims(), &key.public_key_bytes());
    let err = attestor.attest(&token, NOW).await.unwrap_err();
    assert_eq!(
        err,
        AttestError::UnsupportedAlgorithm {
            alg: "HS256".into(),
            allowed: "RS256, ES256, ES384".into()
        }
    );
}

#[tokio::test]
async fn missing_sub() {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove("sub");
    let err = refusal(claims).await;
    assert_eq!(
        err,
        AttestError::MissingClaim {
            claim: "sub".into(),
            expected: "string"
        }
    );
    let err = refusal(with("sub", json!(42))).await;
    assert_eq!(
        err,
        AttestError::MissingClaim {
            claim: "sub".into(),
            expected: "string"
        }
    );
}

#[tokio::test]
async fn too_old() {
    let err = refusal(with("iat", json!(NOW - 3601))).await;
    assert_eq!(
        err,
        AttestError::TooOld {
            issued_at: NOW - 3601,
            max_age_seconds: 3600
        }
    );
    let err = refusal({
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove("iat");
        claims
    })
    .await;
    assert_eq!(
        err,
        AttestError::MissingClaim {
            claim: "iat".into(),
            expected: "integer"
        }
    );
}

#[tokio::test]
async fn exp_as_a_string() {
    let err = refusal(with("exp", json!((NOW + 300).to_string()))).await;
    assert_eq!(
        err,
        AttestError::MissingClaim {
            claim: "exp".into(),
            expected: "integer"
        }
    );
}

#[tokio::test]
async fn hostile_sub_is_refused_or_made_printable() {
    let err = refusal(with("sub", json!("repo:org/app\nforged"))).await;
    assert!(matches!(err, AttestError::BadClaimValue { claim, .. } if claim == "sub"));

    // When sub is not a selector claim it only names the subject.
    let key = TestKey::p256("k");
    let mut config = config(jwks_of(&[&key]));
    config.claims = vec!["repository".into()];
    let attestor = OidcAttestor::new(&[config]).unwrap();
    let attestation = attestor
        .attest(&key.token(&with("sub", json!("a\nb"))), NOW)
        .await
        .unwrap();
    assert_eq!(attestation.subject, "oidc:gh:a?b");
}

#[test]
fn entry_guard_requires_an_identity_claim() {
    let attestor = attestor(&TestKey::p256("k"));
    // Control: constrained on the repository.
    attestor
        .check_entry_selectors(&selectors(&[
            "oidc:gh:repository:org/app",
            "oidc:gh:ref:refs/heads/main",
        ]))
        .unwrap();
    attestor
        .check_entry_selectors(&selectors(&["oidc:gh:repository:org/app"]))
        .unwrap();
    attestor
        .check_entry_selectors(&selectors(&["k8s:ns:billing"]))
        .unwrap();

    let err = attestor
        .check_entry_selectors(&selectors(&["oidc:gh:ref:refs/heads/main"]))
        .unwrap_err();
    assert_eq!(
        err,
        EntrySelectorError::Unconstrained {
            alias: "gh".into(),
            identity_claims: vec!["sub".into(), "repository".into()],
        }
    );
    // The message tells the operator how to fix the entry.
    assert!(err.to_string().contains("oidc:gh:sub:<value>"), "{err}");

    let err = attestor
        .check_entry_selectors(&selectors(&["oidc:gitlab:project_path:org/app"]))
        .unwrap_err();
    assert!(
        matches!(&err, EntrySelectorError::UnknownIssuer { alias, configured, .. }
            if alias == "gitlab" && *configured == ["gh"]),
        "{err}"
    );
    assert!(matches!(
        attestor.check_entry_selectors(&selectors(&["oidc:gitlab"])),
        Err(EntrySelectorError::UnknownIssuer { .. })
    ));
    for malformed in ["oidc:gh", "oidc:gh:repository"] {
        let err = attestor
            .check_entry_selectors(&selectors(&[malformed]))
            .unwrap_err();
        assert!(
            matches!(&err, EntrySelectorError::MalformedOidc { alias: Some(alias), .. } if alias == "gh"),
            "{err}"
        );
    }

    // A claim the issuer never yields could never match.
    let err = attestor
        .check_entry_selectors(&selectors(&["oidc:gh:actor:octocat", "oidc:gh:sub:x"]))
        .unwrap_err();
    assert!(
        matches!(&err, EntrySelectorError::UnknownClaim { claim, .. } if claim == "actor"),
        "{err}"
    );
}

#[test]
fn entry_guard_is_per_issuer() {
    let gh = TestKey::p256("k");
    let mut gitlab = config(jwks_of(&[&gh]));
    gitlab.alias = "gitlab".into();
    gitlab.issuer = "https://gitlab.example.com".into();
    gitlab.claims = vec!["project_path".into(), "ref".into()];
    let attestor = OidcAttestor::new(&[config(jwks_of(&[&gh])), gitlab]).unwrap();
    attestor
        .check_entry_selectors(&selectors(&[
            "oidc:gh:repository:org/app",
            "oidc:gitlab:project_path:g/p",
        ]))
        .unwrap();
    let err = attestor
        .check_entry_selectors(&selectors(&[
            "oidc:gh:repository:org/app",
            "oidc:gitlab:ref:main",
        ]))
        .unwrap_err();
    assert!(
        matches!(&err, EntrySelectorError::Unconstrained { alias, identity_claims }
            if alias == "gitlab" && *identity_claims == ["project_path"]),
        "{err}"
    );
}

#[test]
fn config_is_validated() {
    let jwks = jwks_of(&[&TestKey::p256("k")]);
    // Positive control: the same config, unchanged, is accepted.
    OidcAttestor::new(&[config(jwks.clone())]).unwrap();
    let refusal = |issuers: &[OidcIssuerConfig]| OidcAttestor::new(issuers).unwrap_err();
    assert!(matches!(
        refusal(&[]),
        AttestorConfigError::NothingConfigured { attestor: "oidc" }
    ));

    let mut bad_alias = config(jwks.clone());
    bad_alias.alias = "GitHub".into();
    let err = refusal(&[bad_alias]);
    assert!(
        matches!(err, AttestorConfigError::InvalidName { field: "alias", .. }),
        "{err}"
    );

    let mut same_issuer = config(jwks.clone());
    same_issuer.alias = "gh2".into();
    let err = refusal(&[config(jwks.clone()), same_issuer]);
    assert!(
        matches!(&err, AttestorConfigError::DuplicateIssuer { attestor: "oidc", name, .. } if name == "gh2"),
        "{err}"
    );
    let err = refusal(&[config(jwks.clone()), config(jwks.clone())]);
    assert_eq!(
        err.to_string(),
        "attestors.oidc: issuer gh: the alias is used by another issuer"
    );

    let mut colon = config(jwks.clone());
    colon.claims.push("https://aws.amazon.com/tags".into());
    let err = refusal(&[colon]);
    assert!(
        matches!(
            err,
            AttestorConfigError::InvalidClaimName {
                field: "claims",
                ..
            }
        ),
        "{err}"
    );

    let mut twice = config(jwks.clone());
    twice.identity_claims.push("sub".into());
    let err = refusal(&[twice]);
    assert!(
        matches!(&err, AttestorConfigError::DuplicateClaimName { field: "identity_claims", claim, .. } if claim == "sub"),
        "{err}"
    );

    let mut no_identity = config(jwks.clone());
    no_identity.claims = vec!["ref".into()];
    let err = refusal(&[no_identity]);
    assert!(
        matches!(err, AttestorConfigError::NoIdentityClaim { .. }),
        "{err}"
    );

    let mut no_source = config(jwks);
    no_source.jwks = None;
    let err = refusal(&[no_source]);
    assert!(
        matches!(
            err,
            AttestorConfigError::JwksSource {
                attestor: "oidc",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn config_defaults_from_toml() {
    let config: OidcIssuerConfig = toml::from_str(
        r#"
        alias = "gh"
        issuer = "https://token.actions.githubusercontent.com"
        discovery_url = "https://token.actions.githubusercontent.com/.well-known/openid-configuration"
        audience = "mayfly"
        "#,
    )
    .unwrap();
    assert_eq!(config.claims, DEFAULT_CLAIMS);
    assert_eq!(config.identity_claims, DEFAULT_IDENTITY_CLAIMS);
    assert_eq!(config.max_token_age, None);
    assert!(
        toml::from_str::<OidcIssuerConfig>(
            "alias = \"gh\"\nissuer = \"i\"\naudience = \"a\"\nextra = 1\n"
        )
        .is_err()
    );
}
