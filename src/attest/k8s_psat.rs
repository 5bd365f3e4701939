//! Kubernetes projected service-account tokens (PSAT).
//!
//! A pod mounts a token the API server signed for an audience of Mayfly's
//! choosing (`serviceAccountToken.audience` in the projected volume). The
//! attestor picks the cluster by the token's `iss`, verifies it strictly
//! with that cluster's keys ([`jwt_evidence`]), and
//! yields selectors from the `kubernetes.io` claim:
//!
//! | selector | from | |
//! |---|---|---|
//! | `k8s:cluster:<name>` | the configured cluster name | always |
//! | `k8s:ns:<namespace>` | `kubernetes.io.namespace` | required |
//! | `k8s:sa:<name>` | `kubernetes.io.serviceaccount.name` | required |
//! | `k8s:pod-name:<name>` | `kubernetes.io.pod.name` | when present |
//! | `k8s:pod-uid:<uid>` | `kubernetes.io.pod.uid` | when present |
//! | `k8s:node-name:<name>` | `kubernetes.io.node.name` | when present |
//!
//! A token is accepted once: its replay key is `k8s:<cluster>:jti:<jti>`
//! (or a hash of the token without `jti`), kept until `exp` plus leeway.
//!
//! ```toml
//! [[attestors.k8s_psat]]
//! cluster = "prod"
//! issuer = "https://kubernetes.default.svc.cluster.local"
//! jwks_file = "/etc/mayfly/prod-jwks.json"  # or discovery_url, or jwks (inline)
//! audience = "mayfly"
//! max_token_age = "1h"                      # the default
//! ```

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwks::JwksCache;
use super::jwt_evidence::{self, JwtRules};
use super::{AttestError, Attestation, selector, sha256_hex, truncated};

const ATTESTOR: &str = "k8s_psat";

/// One trusted cluster, `[[attestors.k8s_psat]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sClusterConfig {
    /// The cluster's name in selectors (`k8s:cluster:<name>`): 1–63 of
    /// `[a-z0-9_-]`.
    pub cluster: String,
    /// The API server's service-account issuer (`--service-account-issuer`),
    /// exactly as tokens carry it in `iss`.
    pub issuer: String,
    /// A JWKS file holding the cluster's service-account signing keys.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The issuer's OIDC discovery URL
    /// (`<issuer>/.well-known/openid-configuration`).
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// A JWKS document, inline.
    #[serde(default)]
    pub jwks: Option<String>,
    /// The audience the pods' projected tokens are requested for.
    pub audience: String,
    /// Tokens issued longer ago than this are refused (default 1h).
    #[serde(default, deserialize_with = "jwt_evidence::optional_duration")]
    pub max_token_age: Option<Duration>,
}

/// Verifies projected service-account tokens from the configured clusters.
#[derive(Debug)]
pub struct K8sPsatAttestor {
    clusters: Vec<Cluster>,
}

#[derive(Debug)]
struct Cluster {
    name: String,
    rules: JwtRules,
    keys: JwksCache,
}

impl K8sPsatAttestor {
    /// Builds the attestor; JWKS files and inline documents are parsed now.
    ///
    /// # Errors
    ///
    /// A sentence for the operator naming the cluster: no cluster, a name
    /// that is not a selector-safe label, a repeated name or issuer, an
    /// empty issuer or audience, not exactly one JWKS source, a zero
    /// `max_token_age`, or keys that cannot be loaded.
    pub fn new(clusters: &[K8sClusterConfig]) -> Result<Self, String> {
        if clusters.is_empty() {
            return Err("no cluster is configured".to_owned());
        }
        let mut names = HashSet::new();
        let mut issuers = HashSet::new();
        let mut built = Vec::with_capacity(clusters.len());
        for config in clusters {
            jwt_evidence::check_label("cluster name", &config.cluster)?;
            let name = &config.cluster;
            let context = |e: String| format!("cluster {name}: {e}");
            if !names.insert(name.as_str()) {
                return Err(context("the name is used by another cluster".to_owned()));
            }
            if !issuers.insert(config.issuer.as_str()) {
                return Err(context(format!(
                    "issuer {} is used by another cluster",
                    config.issuer
                )));
            }
            let (rules, keys) =
                jwt_evidence::issuer_rules_and_keys(&jwt_evidence::IssuerSettings {
                    issuer: &config.issuer,
                    audience: &config.audience,
                    jwks_file: config.jwks_file.as_deref(),
                    discovery_url: config.discovery_url.as_deref(),
                    jwks: config.jwks.as_deref(),
                    max_token_age: config.max_token_age,
                })
                .map_err(context)?;
            built.push(Cluster {
                name: name.clone(),
                rules,
                keys,
            });
        }
        Ok(K8sPsatAttestor { clusters: built })
    }

    /// Verifies a projected service-account token at `now` (unix seconds)
    /// and returns what it proves.
    ///
    /// # Errors
    ///
    /// [`AttestError::UntrustedIssuer`] when no cluster has the token's
    /// `iss`; every error of [`jwt_evidence::verify`];
    /// [`AttestError::MissingClaim`] without `kubernetes.io.namespace` or
    /// `kubernetes.io.serviceaccount.name`; [`AttestError::BadClaimValue`]
    /// for a value that cannot be a selector.
    pub async fn attest(&self, token: &str, now: i64) -> Result<Attestation, AttestError> {
        let peeked = jwt_evidence::peek(token)?;
        let cluster = self
            .clusters
            .iter()
            .find(|cluster| cluster.rules.issuer == peeked.issuer)
            .ok_or_else(|| AttestError::UntrustedIssuer {
                found: truncated(&peeked.issuer),
            })?;
        let claims = jwt_evidence::verify(token, &cluster.rules, &cluster.keys, now).await?;
        let pod = PodIdentity::from_claims(&claims)?;

        let mut selectors = vec![
            selector("k8s:cluster:", "cluster", &cluster.name)?,
            selector("k8s:ns:", NAMESPACE, pod.namespace)?,
            selector("k8s:sa:", SERVICE_ACCOUNT, pod.service_account)?,
        ];
        for (prefix, claim, value) in [
            ("k8s:pod-name:", POD_NAME, pod.pod_name),
            ("k8s:pod-uid:", POD_UID, pod.pod_uid),
            ("k8s:node-name:", NODE_NAME, pod.node_name),
        ] {
            if let Some(value) = value {
                selectors.push(selector(prefix, claim, value)?);
            }
        }
        selectors.sort();
        selectors.dedup();

        let namespace = format!("k8s:{}", cluster.name);
        Ok(Attestation {
            attestor: ATTESTOR,
            // Both parts passed the selector check: printable, no spaces.
            subject: format!("{namespace}/{}/{}", pod.namespace, pod.service_account),
            selectors,
            evidence_sha256: sha256_hex(token.as_bytes()),
            replay: Some(jwt_evidence::replay_guard(
                &namespace,
                token,
                &claims,
                cluster.rules.leeway,
            )?),
        })
    }
}

const NAMESPACE: &str = "kubernetes.io.namespace";
const SERVICE_ACCOUNT: &str = "kubernetes.io.serviceaccount.name";
const POD_NAME: &str = "kubernetes.io.pod.name";
const POD_UID: &str = "kubernetes.io.pod.uid";
const NODE_NAME: &str = "kubernetes.io.node.name";

/// What the `kubernetes.io` claim says about the pod.
struct PodIdentity<'a> {
    namespace: &'a str,
    service_account: &'a str,
    pod_name: Option<&'a str>,
    pod_uid: Option<&'a str>,
    node_name: Option<&'a str>,
}

impl<'a> PodIdentity<'a> {
    fn from_claims(claims: &'a Map<String, Value>) -> Result<Self, AttestError> {
        let required = |path: &[&str], claim: &str| {
            string_at(claims, path, claim)?.ok_or_else(|| AttestError::MissingClaim {
                claim: claim.to_owned(),
                expected: "string",
            })
        };
        Ok(PodIdentity {
            namespace: required(&["kubernetes.io", "namespace"], NAMESPACE)?,
            service_account: required(
                &["kubernetes.io", "serviceaccount", "name"],
                SERVICE_ACCOUNT,
            )?,
            pod_name: string_at(claims, &["kubernetes.io", "pod", "name"], POD_NAME)?,
            pod_uid: string_at(claims, &["kubernetes.io", "pod", "uid"], POD_UID)?,
            node_name: string_at(claims, &["kubernetes.io", "node", "name"], NODE_NAME)?,
        })
    }
}

/// The string at `path`: `None` when absent, an error when present but not
/// a string.
fn string_at<'a>(
    claims: &'a Map<String, Value>,
    path: &[&str],
    claim: &str,
) -> Result<Option<&'a str>, AttestError> {
    let mut object = claims;
    let Some((last, parents)) = path.split_last() else {
        return Ok(None);
    };
    for parent in parents {
        match object.get(*parent) {
            Some(Value::Object(inner)) => object = inner,
            _ => return Ok(None),
        }
    }
    match object.get(*last) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(AttestError::MissingClaim {
            claim: claim.to_owned(),
            expected: "string",
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::attest::jwks::testing::{TestKey, encode_token, hs256_token, jwks_of};
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
        K8sPsatAttestor::new(&[config(jwks.clone())]).unwrap();
        assert!(K8sPsatAttestor::new(&[]).is_err());

        let mut bad_name = config(jwks.clone());
        bad_name.cluster = "Prod:1".into();
        assert!(
            K8sPsatAttestor::new(&[bad_name])
                .unwrap_err()
                .contains("cluster name")
        );

        let mut same_issuer = config(jwks.clone());
        same_issuer.cluster = "other".into();
        assert!(
            K8sPsatAttestor::new(&[config(jwks.clone()), same_issuer])
                .unwrap_err()
                .contains("issuer")
        );
        assert!(K8sPsatAttestor::new(&[config(jwks.clone()), config(jwks.clone())]).is_err());

        let mut two_sources = config(jwks.clone());
        two_sources.jwks_file = Some("/etc/jwks.json".into());
        assert!(
            K8sPsatAttestor::new(&[two_sources])
                .unwrap_err()
                .contains("exactly one")
        );

        let mut zero_age = config(jwks);
        zero_age.max_token_age = Some(Duration::ZERO);
        assert!(K8sPsatAttestor::new(&[zero_age]).is_err());
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
}
