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
//! environments = ["staging", "test"]        # optional pin; unset: any
//! ```
//!
//! `environments` pins the environments this cluster may yield: an entry it
//! matches with another environment is refused at attestation (audited).
//! Checked at load: not empty, valid environment names, none twice.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwks::JwksCache;
use super::jwt_evidence::{self, JwtRules};
use super::{AttestError, Attestation, AttestorConfigError, selector, sha256_hex, truncated};

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
    /// The only environments an entry attested through this cluster may
    /// have, e.g. `["staging", "test"]`; unset: no pin. Checked at
    /// attestation, refusing (and auditing) any other entry.
    #[serde(default)]
    pub environments: Option<Vec<String>>,
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
    /// An [`AttestorConfigError`] naming the cluster:
    /// [`NothingConfigured`](AttestorConfigError::NothingConfigured) without
    /// a cluster, [`InvalidName`](AttestorConfigError::InvalidName) for a
    /// name that is not a selector-safe label,
    /// [`DuplicateName`](AttestorConfigError::DuplicateName) or
    /// [`DuplicateIssuer`](AttestorConfigError::DuplicateIssuer),
    /// [`EmptyIssuerOrAudience`](AttestorConfigError::EmptyIssuerOrAudience),
    /// [`JwksSource`](AttestorConfigError::JwksSource) unless exactly one
    /// JWKS source is set,
    /// [`ZeroMaxTokenAge`](AttestorConfigError::ZeroMaxTokenAge), or
    /// [`Jwks`](AttestorConfigError::Jwks) when the keys cannot be loaded.
    pub fn new(clusters: &[K8sClusterConfig]) -> Result<Self, AttestorConfigError> {
        if clusters.is_empty() {
            return Err(AttestorConfigError::NothingConfigured { attestor: ATTESTOR });
        }
        let mut names = HashSet::new();
        let mut issuers = HashSet::new();
        let mut built = Vec::with_capacity(clusters.len());
        for config in clusters {
            let name = &config.cluster;
            if !jwt_evidence::is_label(name) {
                return Err(AttestorConfigError::InvalidName {
                    attestor: ATTESTOR,
                    field: "cluster name",
                    value: truncated(name),
                });
            }
            if !names.insert(name.as_str()) {
                return Err(AttestorConfigError::DuplicateName {
                    attestor: ATTESTOR,
                    name: name.clone(),
                });
            }
            if !issuers.insert(config.issuer.as_str()) {
                return Err(AttestorConfigError::DuplicateIssuer {
                    attestor: ATTESTOR,
                    name: name.clone(),
                    issuer: config.issuer.clone(),
                });
            }
            let (rules, keys) =
                jwt_evidence::issuer_rules_and_keys(&jwt_evidence::IssuerSettings {
                    attestor: ATTESTOR,
                    name,
                    issuer: &config.issuer,
                    audience: &config.audience,
                    jwks_file: config.jwks_file.as_deref(),
                    discovery_url: config.discovery_url.as_deref(),
                    jwks: config.jwks.as_deref(),
                    max_token_age: config.max_token_age,
                })?;
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
mod tests;
