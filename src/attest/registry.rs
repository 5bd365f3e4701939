//! The configured attestors, and the one entry point the mint path calls.

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
        Ok(Attestors {
            k8s_psat,
            oidc,
            x509pop,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::join_token::{JoinTokenRecord, TokenHash};
    use crate::attest::testing::{TestKey, jwks_of};
    use crate::policy::{Entry, EntryId};
    use crate::store::{EmbeddedStore, RedeemError, ReplicaRecord, StoreError, UsageRecord};
    use mayfly_sdk::revocation::Revocation;

    /// A store that cannot answer anything (Redis down, disk gone).
    #[derive(Debug)]
    struct DownStore;

    fn down() -> StoreError {
        StoreError::Unavailable {
            reason: "store is down".into(),
        }
    }

    #[async_trait::async_trait]
    impl Store for DownStore {
        async fn list_entries(&self) -> Result<Vec<Entry>, StoreError> {
            Err(down())
        }
        async fn entry(&self, _: &EntryId) -> Result<Option<Entry>, StoreError> {
            Err(down())
        }
        async fn create_entry(&self, _: &Entry) -> Result<(), StoreError> {
            Err(down())
        }
        async fn update_entry(&self, _: &Entry, _: u64) -> Result<(), StoreError> {
            Err(down())
        }
        async fn delete_entry(&self, _: &EntryId) -> Result<Entry, StoreError> {
            Err(down())
        }
        async fn insert_join_token(&self, _: &JoinTokenRecord) -> Result<(), StoreError> {
            Err(down())
        }
        async fn redeem_join_token(
            &self,
            _: &TokenHash,
            _: i64,
        ) -> Result<JoinTokenRecord, RedeemError> {
            Err(RedeemError::Store(down()))
        }
        async fn prune_join_tokens(&self, _: i64) -> Result<usize, StoreError> {
            Err(down())
        }
        async fn record_usage(&self, _: &[UsageRecord]) -> Result<(), StoreError> {
            Err(down())
        }
        async fn usage(&self) -> Result<Vec<UsageRecord>, StoreError> {
            Err(down())
        }
        async fn use_once(&self, _: &str, _: i64, _: i64) -> Result<bool, StoreError> {
            Err(down())
        }
        async fn insert_challenge(&self, _: &str, _: &[u8], _: i64) -> Result<(), StoreError> {
            Err(down())
        }
        async fn take_challenge(&self, _: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
            Err(down())
        }
        async fn prune_one_time(&self, _: i64) -> Result<usize, StoreError> {
            Err(down())
        }
        async fn put_revocation(&self, _: &Revocation) -> Result<(), StoreError> {
            Err(down())
        }
        async fn delete_revocation(&self, _: &str) -> Result<bool, StoreError> {
            Err(down())
        }
        async fn list_revocations(&self) -> Result<Vec<Revocation>, StoreError> {
            Err(down())
        }
        async fn prune_revocations(&self, _: i64) -> Result<Vec<String>, StoreError> {
            Err(down())
        }
        async fn publish_replica(&self, _: &ReplicaRecord) -> Result<(), StoreError> {
            Err(down())
        }
        async fn live_replicas(&self, _: i64) -> Result<Vec<ReplicaRecord>, StoreError> {
            Err(down())
        }
        fn describe(&self) -> String {
            "down".into()
        }
    }

    const ISSUER: &str = "https://ci.example.org";

    fn oidc_attestors(key: &TestKey) -> Attestors {
        let config: AttestorsConfig = toml::from_str(&format!(
            "[[oidc]]\nalias = \"ci\"\nissuer = \"{ISSUER}\"\naudience = \"mayfly\"\njwks = {}\n",
            serde_json::Value::String(jwks_of(&[key]))
        ))
        .unwrap();
        Attestors::new(&config).unwrap()
    }

    fn token(key: &TestKey) -> String {
        let now = crate::clock::unix_seconds(SystemTime::now());
        key.token(&serde_json::json!({
            "iss": ISSUER, "aud": "mayfly", "sub": "repo:acme/app", "jti": "run-1",
            "exp": now + 300, "iat": now - 1,
        }))
    }

    #[tokio::test]
    async fn replay_protection_fails_closed_when_the_store_is_down() {
        let key = TestKey::p256("k1");
        let attestors = oidc_attestors(&key);
        let evidence = Evidence::Oidc(token(&key));
        // Positive control: with a working store the token is accepted once.
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        assert!(
            attestors
                .attest(&evidence, &store, SystemTime::now())
                .await
                .is_ok()
        );
        assert!(matches!(
            attestors.attest(&evidence, &store, SystemTime::now()).await,
            Err(AttestError::Replayed { .. })
        ));
        // The same (valid) evidence with the store down: refused, Unavailable.
        let fresh = Evidence::Oidc(token(&key));
        let result = attestors
            .attest(&fresh, &DownStore, SystemTime::now())
            .await;
        assert!(
            matches!(result, Err(AttestError::Unavailable { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn config_errors_name_the_section_and_selectors_need_their_attestor() {
        let key = TestKey::p256("k1");
        let configured = oidc_attestors(&key);
        // Positive control: an oidc entry constrained on `sub` is accepted.
        let constrained = [Selector::parse("oidc:ci:sub:repo:acme/app").unwrap()];
        configured.check_entry_selectors(&constrained).unwrap();
        let unconfigured = Attestors::new(&AttestorsConfig::default()).unwrap();
        assert_eq!(
            unconfigured.check_entry_selectors(&constrained),
            Err(EntrySelectorError::AttestorNotConfigured { attestor: "oidc" })
        );

        let config: AttestorsConfig = toml::from_str(
            "[[oidc]]\nalias = \"ci\"\nissuer = \"https://ci.example.org\"\naudience = \"mayfly\"\njwks = '{\"keys\": []}'\n",
        )
        .unwrap();
        let err = Attestors::new(&config).unwrap_err();
        assert!(
            matches!(
                err,
                AttestorConfigError::Jwks {
                    attestor: "oidc",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("attestors.oidc: issuer ci: JWKS of issuer https://ci.example.org: no usable signing key"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn challenges_fail_closed_when_the_store_is_down() {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, ca.pem()).unwrap();
        let config = AttestorsConfig {
            x509pop: Some(X509PopConfig {
                ca_bundle: bundle,
                challenge_ttl: None,
            }),
            ..AttestorsConfig::default()
        };
        let attestors = Attestors::new(&config).unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        assert!(attestors.new_challenge(&store, 0).await.is_ok());
        assert!(matches!(
            attestors.new_challenge(&DownStore, 0).await,
            Err(AttestError::Unavailable { .. })
        ));
        let evidence = Evidence::X509Pop {
            challenge_id: "x".into(),
            chain: vec![],
            signature: vec![],
        };
        assert!(matches!(
            attestors
                .attest(&evidence, &DownStore, SystemTime::now())
                .await,
            Err(AttestError::Unavailable { .. })
        ));
        // Debug of evidence never shows a token.
        assert_eq!(
            format!("{:?}", Evidence::Oidc("secret.token.here".into())),
            "oidc([redacted])"
        );
    }
}
