//! The configured attestors, and the one entry point the mint path calls.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Deserialize;

use super::k8s_psat::{K8sClusterConfig, K8sPsatAttestor};
use super::oidc::{OidcAttestor, OidcIssuerConfig};
use super::x509pop::{Challenge, X509PopAttestor, X509PopConfig};
use super::{AttestError, Attestation, AttestorConfigError, EntrySelectorError};
use crate::clock::{rfc3339, unix_seconds};
use crate::policy::Selector;
use crate::store::Store;

/// The `[attestors]` section of the server config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestorsConfig {
    /// `[[attestors.k8s_psat]]`, one per cluster.
    #[serde(default)]
    pub k8s_psat: Vec<K8sClusterConfig>,
    /// `[[attestors.oidc]]`, one per issuer.
    #[serde(default)]
    pub oidc: Vec<OidcIssuerConfig>,
    /// `[attestors.x509pop]`.
    pub x509pop: Option<X509PopConfig>,
}

/// Evidence as it arrives from a workload. Debug never shows a token.
pub enum Evidence {
    /// A Kubernetes projected service-account token.
    K8sPsat(String),
    /// An OIDC ID token.
    Oidc(String),
    /// A signature over a challenge's nonce, and the certificate chain.
    X509Pop {
        /// From `CreateX509PopChallenge`.
        challenge_id: String,
        /// DER, leaf first.
        chain: Vec<Vec<u8>>,
        /// Over `X509PopAttestor::signed_message(nonce)`.
        signature: Vec<u8>,
    },
}

impl Evidence {
    /// The attestor this evidence is for.
    pub fn attestor(&self) -> &'static str {
        match self {
            Evidence::K8sPsat(_) => "k8s_psat",
            Evidence::Oidc(_) => "oidc",
            Evidence::X509Pop { .. } => "x509pop",
        }
    }
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Evidence::X509Pop {
                challenge_id,
                chain,
                ..
            } => f
                .debug_struct("X509Pop")
                .field("challenge_id", challenge_id)
                .field("certificates", &chain.len())
                .finish_non_exhaustive(),
            other => write!(f, "{}([redacted])", other.attestor()),
        }
    }
}

/// Every configured attestor.
#[derive(Debug, Default)]
pub struct Attestors {
    k8s_psat: Option<K8sPsatAttestor>,
    oidc: Option<OidcAttestor>,
    x509pop: Option<X509PopAttestor>,
    /// `environments` of each pinned cluster, by cluster name.
    k8s_pins: BTreeMap<String, Vec<String>>,
    /// `environments` of each pinned OIDC issuer, by alias.
    oidc_pins: BTreeMap<String, Vec<String>>,
    /// `environments` of `[attestors.x509pop]`, when pinned.
    x509pop_pin: Option<Vec<String>>,
}

/// The environments an attestor configuration may yield (its
/// `environments`), for the entry an attestation matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentPin<'a> {
    /// The configuration, as messages name it: `k8s_psat cluster staging`,
    /// `oidc issuer gh`, `x509pop`.
    pub source: String,
    /// The allowed environments; empty (nothing allowed) only when the
    /// configuration that proved the evidence cannot be told, to fail closed.
    pub environments: &'a [String],
}

impl Attestors {
    /// Builds the attestors (reads JWKS files and CA bundles).
    ///
    /// # Errors
    ///
    /// The first attestor's [`AttestorConfigError`]; its message names the
    /// config section (`attestors.oidc: ...`).
    pub fn new(config: &AttestorsConfig) -> Result<Self, AttestorConfigError> {
        let k8s_psat = (!config.k8s_psat.is_empty())
            .then(|| K8sPsatAttestor::new(&config.k8s_psat))
            .transpose()?;
        let oidc = (!config.oidc.is_empty())
            .then(|| OidcAttestor::new(&config.oidc))
            .transpose()?;
        let x509pop = config
            .x509pop
            .as_ref()
            .map(X509PopAttestor::new)
            .transpose()?;
        let mut k8s_pins = BTreeMap::new();
        for cluster in &config.k8s_psat {
            let source = format!("k8s_psat: cluster {}", cluster.cluster);
            if let Some(pin) = checked_pin(&source, cluster.environments.as_deref())? {
                k8s_pins.insert(cluster.cluster.clone(), pin);
            }
        }
        let mut oidc_pins = BTreeMap::new();
        for issuer in &config.oidc {
            let source = format!("oidc: issuer {}", issuer.alias);
            if let Some(pin) = checked_pin(&source, issuer.environments.as_deref())? {
                oidc_pins.insert(issuer.alias.clone(), pin);
            }
        }
        let x509pop_pin = match &config.x509pop {
            Some(x509pop) => checked_pin("x509pop", x509pop.environments.as_deref())?,
            None => None,
        };
        Ok(Attestors {
            k8s_psat,
            oidc,
            x509pop,
            k8s_pins,
            oidc_pins,
            x509pop_pin,
        })
    }

    /// The environments the configuration that made `attestation` may
    /// yield, or `None` when it is not pinned. A pinned attestor whose
    /// configuration cannot be told from the attestation (no cluster
    /// selector, no alias in the subject) yields an empty pin: fail closed.
    pub fn environment_pin(&self, attestation: &Attestation) -> Option<EnvironmentPin<'_>> {
        match attestation.attestor {
            "k8s_psat" => {
                let cluster = attestation
                    .selectors
                    .iter()
                    .find_map(|s| s.as_str().strip_prefix("k8s:cluster:"));
                pinned("k8s_psat cluster", &self.k8s_pins, cluster)
            }
            "oidc" => {
                let alias = attestation
                    .subject
                    .strip_prefix("oidc:")
                    .and_then(|rest| rest.split(':').next());
                pinned("oidc issuer", &self.oidc_pins, alias)
            }
            "x509pop" => self
                .x509pop_pin
                .as_deref()
                .map(|environments| EnvironmentPin {
                    source: "x509pop".to_owned(),
                    environments,
                }),
            _ => None,
        }
    }

    /// The names of the configured attestors (always including join_token).
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = vec!["join_token"];
        if self.k8s_psat.is_some() {
            names.push("k8s_psat");
        }
        if self.oidc.is_some() {
            names.push("oidc");
        }
        if self.x509pop.is_some() {
            names.push("x509pop");
        }
        names
    }

    /// Refuses entry selectors that would trust too much (an OIDC issuer
    /// with no identifying claim constrained).
    ///
    /// # Errors
    ///
    /// [`EntrySelectorError::AttestorNotConfigured`] for `oidc:` selectors
    /// on a server without an OIDC issuer; otherwise as
    /// [`OidcAttestor::check_entry_selectors`].
    pub fn check_entry_selectors(&self, selectors: &[Selector]) -> Result<(), EntrySelectorError> {
        let uses_oidc = selectors.iter().any(|s| s.kind() == "oidc");
        match &self.oidc {
            Some(oidc) => oidc.check_entry_selectors(selectors),
            None if uses_oidc => {
                Err(EntrySelectorError::AttestorNotConfigured { attestor: "oidc" })
            }
            None => Ok(()),
        }
    }

    /// A fresh x509pop challenge, saved in the store for a single use.
    pub async fn new_challenge(
        &self,
        store: &dyn Store,
        now: i64,
    ) -> Result<Challenge, AttestError> {
        let x509pop = self.x509pop.as_ref().ok_or(AttestError::NotConfigured {
            attestor: "x509pop",
        })?;
        let challenge = x509pop.new_challenge(now);
        store
            .insert_challenge(&challenge.id, &challenge.nonce, challenge.expires_at)
            .await
            .map_err(|e| AttestError::Unavailable {
                reason: format!("cannot save the challenge: {e}"),
            })?;
        Ok(challenge)
    }

    /// Verifies `evidence` and, for bearer evidence, records it so it is
    /// accepted only once. Fails closed when the store cannot answer.
    pub async fn attest(
        &self,
        evidence: &Evidence,
        store: &dyn Store,
        now: SystemTime,
    ) -> Result<Attestation, AttestError> {
        let unix_now = unix_seconds(now);
        let attestation = match evidence {
            Evidence::K8sPsat(token) => {
                let attestor = self.k8s_psat.as_ref().ok_or(AttestError::NotConfigured {
                    attestor: "k8s_psat",
                })?;
                attestor.attest(token, unix_now).await?
            }
            Evidence::Oidc(token) => {
                let attestor = self
                    .oidc
                    .as_ref()
                    .ok_or(AttestError::NotConfigured { attestor: "oidc" })?;
                attestor.attest(token, unix_now).await?
            }
            Evidence::X509Pop {
                challenge_id,
                chain,
                signature,
            } => {
                let attestor = self.x509pop.as_ref().ok_or(AttestError::NotConfigured {
                    attestor: "x509pop",
                })?;
                // Taking the challenge consumes it, whatever the outcome: a
                // nonce is answered at most once.
                let taken = store.take_challenge(challenge_id).await.map_err(|e| {
                    AttestError::Unavailable {
                        reason: format!("cannot read the challenge: {e}"),
                    }
                })?;
                let (nonce, expires_at) = taken.ok_or_else(|| AttestError::BadChallenge {
                    reason: "is unknown or was already used".into(),
                })?;
                if unix_now > expires_at {
                    return Err(AttestError::BadChallenge {
                        reason: format!("expired at {}", rfc3339(expires_at)),
                    });
                }
                attestor.verify(chain, &nonce, signature, now)?
            }
        };
        if let Some(guard) = &attestation.replay {
            let fresh = store
                .use_once(&guard.key, guard.expires_at, unix_now)
                .await
                .map_err(|e| AttestError::Unavailable {
                    reason: format!("replay protection unavailable, refusing: {e}"),
                })?;
            if !fresh {
                return Err(AttestError::Replayed {
                    attestor: attestation.attestor,
                });
            }
        }
        Ok(attestation)
    }
}

/// The pin of the configuration `name` of one attestor `kind`; when the
/// name cannot be told and some configuration of that kind is pinned, an
/// empty pin (fail closed).
fn pinned<'a>(
    kind: &str,
    pins: &'a BTreeMap<String, Vec<String>>,
    name: Option<&str>,
) -> Option<EnvironmentPin<'a>> {
    match name {
        Some(name) => pins.get(name).map(|environments| EnvironmentPin {
            source: format!("{kind} {name}"),
            environments,
        }),
        None if pins.is_empty() => None,
        None => Some(EnvironmentPin {
            source: format!("{kind} (unknown)"),
            environments: &[],
        }),
    }
}

/// Checks an attestor configuration's `environments`: unset is no pin;
/// set, it names at least one environment, each a valid environment label
/// (as entries spell them), none twice.
fn checked_pin(
    section: &str,
    environments: Option<&[String]>,
) -> Result<Option<Vec<String>>, AttestorConfigError> {
    let Some(environments) = environments else {
        return Ok(None);
    };
    let invalid = |reason: String| AttestorConfigError::InvalidEnvironments {
        section: section.to_owned(),
        reason,
    };
    if environments.is_empty() {
        return Err(invalid(
            "names no environment, so nothing could be attested; leave it out for no pin".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for environment in environments {
        let valid = !environment.is_empty()
            && environment.len() <= 64
            && environment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(invalid(format!(
                "{:?} is not an environment: 1-64 lowercase letters, digits, '-' or '_' (e.g. prod, staging)",
                super::truncated(environment)
            )));
        }
        if !seen.insert(environment.as_str()) {
            return Err(invalid(format!("{environment} is listed twice")));
        }
    }
    Ok(Some(environments.to_vec()))
}

#[cfg(test)]
mod tests;
