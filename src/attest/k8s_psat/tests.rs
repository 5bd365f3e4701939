use serde_json::json;

use super::*;
use crate::attest::jwks::JwksError;
use crate::attest::testing::{TestKey, encode_token, hs256_token, jwks_of};
use crate::policy::Selector;

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn config(jwks: String) -> K8sClusterConfig {
    K8sClusterConfig {
        cluster: "prod".into(),
        issuer: ISSUER.into(),
        jwks_file: None,
        discovery_url: None,
        jwks: Some(jwks),
        audience: "mayfly".into(),
        max_token_age: None,
        environments: None,
    }
}

/// The attestor trusting `key` (kid "sa-key").
fn attestor(key: &TestKey) -> K8sPsatAttestor {
    K8sPsatAttestor::new(&[config(jwks_of(&[key]))]).unwrap()
}

/// What a kubelet-requested token carries.
fn claims() -> Value {
    json!({
        "aud": ["mayfly"],
        "exp": NOW + 3600,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "iss": ISSUER,
        "jti": "5f1d2c3b-0000-4000-8000-000000000001",
        "kubernetes.io": {
            "namespace": "billing",
            "node": {"name": "node-7", "uid": "node-uid"},
            "pod": {"name": "api-6d4cf56db6-x2x9k", "uid": "pod-uid-1"},
            "serviceaccount": {"name": "api", "uid": "sa-uid"},
            "warnafter": NOW + 3000
        },
        "sub": "system:serviceaccount:billing:api"
    })
}

fn with(name: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[name] = value;
    claims
}

/// The positive control next to each refusal: the untouched token passes.
async fn assert_control(attestor: &K8sPsatAttestor, key: &TestKey) {
    attestor.attest(&key.token(&claims()), NOW).await.unwrap();
}

async fn refusal(claims: Value) -> AttestError {
    let key = TestKey::rsa(0, "sa-key");
    let attestor = attestor(&key);
    assert_control(&attestor, &key).await;
    attestor.attest(&key.token(&claims), NOW).await.unwrap_err()
}

fn names(selectors: &[Selector]) -> Vec<&str> {
    selectors.iter().map(Selector::as_str).collect()
}

#[tokio::test]
async fn valid_token_yields_its_selectors() {
    let key = TestKey::rsa(0, "sa-key");
    let token = key.token(&claims());
    let attestation = attestor(&key).attest(&token, NOW).await.unwrap();
    assert_eq!(attestation.attestor, "k8s_psat");
    assert_eq!(attestation.subject, "k8s:prod/billing/api");
    assert_eq!(
        names(&attestation.selectors),
        [
            "k8s:cluster:prod",
            "k8s:node-name:node-7",
            "k8s:ns:billing",
            "k8s:pod-name:api-6d4cf56db6-x2x9k",
            "k8s:pod-uid:pod-uid-1",
            "k8s:sa:api",
        ]
    );
    assert_eq!(attestation.evidence_sha256, sha256_hex(token.as_bytes()));
    let replay = attestation.replay.unwrap();
    assert_eq!(
        replay.key,
        "k8s:prod:jti:5f1d2c3b-0000-4000-8000-000000000001"
    );
    assert_eq!(replay.expires_at, NOW + 3600 + 30);
}

#[tokio::test]
async fn pod_and_node_are_optional_and_no_jti_hashes_the_token() {
    let key = TestKey::p256("sa-key");
    let mut claims = claims();
    let object = claims.as_object_mut().unwrap();
    object.remove("jti");
    let k8s = object["kubernetes.io"].as_object_mut().unwrap();
    k8s.remove("pod");
    k8s.remove("node");
    let token = key.token(&claims);
    let attestation = attestor(&key).attest(&token, NOW).await.unwrap();
    assert_eq!(
        names(&attestation.selectors),
        ["k8s:cluster:prod", "k8s:ns:billing", "k8s:sa:api"]
    );
    let signed = token.rsplit_once('.').unwrap().0;
    assert_eq!(
        attestation.replay.unwrap().key,
        format!("k8s:prod:sha256:{}", sha256_hex(signed.as_bytes()))
    );
}

#[tokio::test]
async fn expired() {
    let err = refusal(with("exp", json!(NOW - 31))).await;
    assert_eq!(
        err,
        AttestError::Expired {
            expired_at: NOW - 31,
            now: NOW
        }
    );
}

#[tokio::test]
async fn not_yet_valid() {
    let err = refusal(with("nbf", json!(NOW + 120))).await;
    assert_eq!(
        err,
        AttestError::NotYetValid {
            not_before: NOW + 120,
            now: NOW
        }
    );
}

#[tokio::test]
async fn wrong_audience() {
    let err = refusal(with("aud", json!(["https://kubernetes.default.svc"]))).await;
    assert_eq!(
        err,
        AttestError::WrongAudience {
            expected: "mayfly".into(),
            found: vec!["https://kubernetes.default.svc".into()]
        }
    );
}

#[tokio::test]
async fn wrong_issuer() {
    let err = refusal(with("iss", json!("https://other-cluster.example"))).await;
    assert_eq!(
        err,
        AttestError::UntrustedIssuer {
            found: "https://other-cluster.example".into()
        }
    );
}

#[tokio::test]
async fn unknown_kid() {
    let key = TestKey::rsa(0, "sa-key");
    let attestor = attestor(&key);
    assert_control(&attestor, &key).await;
    let stranger = TestKey::rsa(0, "rotated-away");
    let err = attestor
        .attest(&stranger.token(&claims()), NOW)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AttestError::UnknownKeyId {
            kid: "rotated-away".into(),
            issuer: ISSUER.into()
        }
    );
}

#[tokio::test]
async fn signed_by_a_key_not_in_the_jwks() {
    let key = TestKey::rsa(0, "sa-key");
    let attestor = attestor(&key);
    assert_control(&attestor, &key).await;
    // Same kid, another key.
    let impostor = TestKey::rsa(1, "sa-key");
    let err = attestor
        .attest(&impostor.token(&claims()), NOW)
        .await
        .unwrap_err();
    assert_eq!(err, AttestError::BadSignature);
}

#[tokio::test]
async fn alg_none() {
    let key = TestKey::rsa(0, "sa-key");
    let attestor = attestor(&key);
    assert_control(&attestor, &key).await;
    let token = encode_token(&json!({"alg": "none", "kid": "sa-key"}), &claims(), b"");
    let err = attestor.attest(&token, NOW).await.unwrap_err();
    assert_eq!(
        err,
        AttestError::UnsupportedAlgorithm {
            alg: "none".into(),
            allowed: "RS256, ES256, ES384".into()
        }
    );
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_never_verified() {
    let key = TestKey::rsa(0, "sa-key");
    let attestor = attestor(&key);
    assert_control(&attestor, &key).await;
    let token = hs256_token("sa-key", &claims(), &key.public_key_bytes());
    let err = attestor.attest(&token, NOW).await.unwrap_err();
    assert!(matches!(err, AttestError::UnsupportedAlgorithm { alg, .. } if alg == "HS256"));
}

#[tokio::test]
async fn missing_namespace() {
    let mut claims = claims();
    claims["kubernetes.io"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let err = refusal(claims).await;
    assert_eq!(
        err,
        AttestError::MissingClaim {
            claim: NAMESPACE.into(),
            expected: "string"
        }
    );

    let err = refusal(with("kubernetes.io", json!({"namespace": "billing"}))).await;
    assert_eq!(
        err,
        AttestError::MissingClaim {
            claim: SERVICE_ACCOUNT.into(),
            expected: "string"
        }
    );
    let mut claims = self::claims();
    claims["kubernetes.io"]["pod"]["name"] = json!(7);
    let err = refusal(claims).await;
    assert_eq!(
        err,
        AttestError::MissingClaim {
            claim: POD_NAME.into(),
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
}

#[tokio::test]
async fn exp_as_a_string() {
    let err = refusal(with("exp", json!((NOW + 3600).to_string()))).await;
    assert_eq!(
        err,
        AttestError::MissingClaim {
            claim: "exp".into(),
            expected: "integer"
        }
    );
}

#[tokio::test]
async fn values_that_cannot_be_selectors() {
    let mut claims = claims();
    claims["kubernetes.io"]["namespace"] = json!("bill ing");
    assert!(matches!(
        refusal(claims).await,
        AttestError::BadClaimValue { .. }
    ));
}

#[tokio::test]
async fn picks_the_cluster_by_issuer() {
    let prod_key = TestKey::rsa(0, "k");
    let dev_key = TestKey::p256("k");
    let mut dev = config(jwks_of(&[&dev_key]));
    dev.cluster = "dev".into();
    dev.issuer = "https://dev.example".into();
    let attestor = K8sPsatAttestor::new(&[config(jwks_of(&[&prod_key])), dev]).unwrap();
    let dev_token = dev_key.token(&with("iss", json!("https://dev.example")));
    let attestation = attestor.attest(&dev_token, NOW).await.unwrap();
    assert!(names(&attestation.selectors).contains(&"k8s:cluster:dev"));
    // prod's issuer with dev's key: verified against prod's keys, refused.
    let err = attestor
        .attest(&dev_key.token(&claims()), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, AttestError::UnsupportedAlgorithm { .. }));
}

#[test]
fn config_is_validated() {
    let jwks = jwks_of(&[&TestKey::p256("k")]);
    // Positive control: the same config, unchanged, is accepted.
    K8sPsatAttestor::new(&[config(jwks.clone())]).unwrap();
    let refusal = |clusters: &[K8sClusterConfig]| K8sPsatAttestor::new(clusters).unwrap_err();
    assert!(matches!(
        refusal(&[]),
        AttestorConfigError::NothingConfigured {
            attestor: "k8s_psat"
        }
    ));

    let mut bad_name = config(jwks.clone());
    bad_name.cluster = "Prod:1".into();
    let err = refusal(&[bad_name]);
    assert!(
        matches!(
            &err,
            AttestorConfigError::InvalidName { field: "cluster name", value, .. } if value == "Prod:1"
        ),
        "{err}"
    );

    let mut same_issuer = config(jwks.clone());
    same_issuer.cluster = "other".into();
    let err = refusal(&[config(jwks.clone()), same_issuer]);
    assert!(
        matches!(&err, AttestorConfigError::DuplicateIssuer { name, .. } if name == "other"),
        "{err}"
    );
    let err = refusal(&[config(jwks.clone()), config(jwks.clone())]);
    assert!(
        matches!(err, AttestorConfigError::DuplicateName { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "attestors.k8s_psat: cluster prod: the name is used by another cluster"
    );

    let mut two_sources = config(jwks.clone());
    two_sources.jwks_file = Some("/etc/jwks.json".into());
    let err = refusal(&[two_sources]);
    assert!(
        matches!(err, AttestorConfigError::JwksSource { .. }),
        "{err}"
    );

    let mut empty_audience = config(jwks.clone());
    empty_audience.audience = String::new();
    let err = refusal(&[empty_audience]);
    assert!(
        matches!(err, AttestorConfigError::EmptyIssuerOrAudience { .. }),
        "{err}"
    );

    let mut no_keys = config(r#"{"keys": []}"#.to_owned());
    no_keys.cluster = "dev".into();
    let err = refusal(&[no_keys]);
    assert!(
        matches!(
            &err,
            AttestorConfigError::Jwks { name, source: JwksError::NoUsableKey, .. } if name == "dev"
        ),
        "{err}"
    );

    let mut zero_age = config(jwks);
    zero_age.max_token_age = Some(Duration::ZERO);
    let err = refusal(&[zero_age]);
    assert!(
        matches!(err, AttestorConfigError::ZeroMaxTokenAge { .. }),
        "{err}"
    );
}

#[test]
fn config_parses_from_toml() {
    let config: K8sClusterConfig = toml::from_str(
        r#"
        cluster = "prod"
        issuer = "https://k8s.example"
        discovery_url = "https://k8s.example/.well-known/openid-configuration"
        audience = "mayfly"
        max_token_age = "15m"
        "#,
    )
    .unwrap();
    assert_eq!(config.max_token_age, Some(Duration::from_secs(900)));
    let unknown = toml::from_str::<K8sClusterConfig>(
        "cluster = \"a\"\nissuer = \"i\"\naudience = \"m\"\nnamespace = \"x\"\n",
    );
    assert!(unknown.is_err());
}
