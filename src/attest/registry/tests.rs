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
    async fn list_audiences(&self) -> Result<Vec<crate::audience::AudienceRecord>, StoreError> {
        Err(down())
    }
    async fn create_audience(&self, _: &crate::audience::AudienceRecord) -> Result<(), StoreError> {
        Err(down())
    }
    async fn update_audience(
        &self,
        _: &crate::audience::AudienceRecord,
        _: u64,
    ) -> Result<(), StoreError> {
        Err(down())
    }
    async fn delete_audience(
        &self,
        _: &str,
    ) -> Result<crate::audience::AudienceRecord, StoreError> {
        Err(down())
    }
    async fn list_grants(&self) -> Result<Vec<crate::policy::grant::GrantRecord>, StoreError> {
        Err(down())
    }
    async fn grant(
        &self,
        _: &str,
    ) -> Result<Option<crate::policy::grant::GrantRecord>, StoreError> {
        Err(down())
    }
    async fn create_grant(&self, _: &crate::policy::grant::GrantRecord) -> Result<(), StoreError> {
        Err(down())
    }
    async fn update_grant(
        &self,
        _: &crate::policy::grant::GrantRecord,
        _: u64,
    ) -> Result<(), StoreError> {
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
    async fn revocations_after(
        &self,
        _: Option<&str>,
        _: usize,
    ) -> Result<Vec<Revocation>, StoreError> {
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
            environments: None,
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

/// Attestors from `[[oidc]]` (alias ci) and `[[k8s_psat]]` (clusters
/// staging and prod), with the given `environments` lines.
fn pinned_attestors(key: &TestKey, oidc_pin: &str, staging_pin: &str) -> Attestors {
    let jwks = serde_json::Value::String(jwks_of(&[key]));
    let config: AttestorsConfig = toml::from_str(&format!(
        "[[oidc]]\nalias = \"ci\"\nissuer = \"{ISSUER}\"\naudience = \"mayfly\"\njwks = {jwks}\n{oidc_pin}\n\
         [[k8s_psat]]\ncluster = \"staging\"\nissuer = \"https://k8s-staging\"\naudience = \"mayfly\"\njwks = {jwks}\n{staging_pin}\n\
         [[k8s_psat]]\ncluster = \"prod\"\nissuer = \"https://k8s-prod\"\naudience = \"mayfly\"\njwks = {jwks}\n"
    ))
    .unwrap();
    Attestors::new(&config).unwrap()
}

fn attestation(attestor: &'static str, subject: &str, selectors: &[&str]) -> Attestation {
    Attestation {
        attestor,
        subject: subject.into(),
        selectors: selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect(),
        evidence_sha256: String::new(),
        replay: None,
    }
}

#[test]
fn an_attestor_configuration_pins_the_environments_it_may_yield() {
    let key = TestKey::p256("k1");
    let attestors = pinned_attestors(
        &key,
        "environments = [\"prod\"]",
        "environments = [\"staging\", \"test\"]",
    );
    let staging = attestation(
        "k8s_psat",
        "k8s:staging/ns/sa",
        &["k8s:cluster:staging", "k8s:ns:ns"],
    );
    let pin = attestors.environment_pin(&staging).unwrap();
    assert_eq!(pin.source, "k8s_psat cluster staging");
    assert_eq!(pin.environments, ["staging", "test"]);
    // Unset is no pin: the prod cluster yields any environment.
    let prod = attestation("k8s_psat", "k8s:prod/ns/sa", &["k8s:cluster:prod"]);
    assert_eq!(attestors.environment_pin(&prod), None);
    let oidc = attestation(
        "oidc",
        "oidc:ci:repo:acme/app",
        &["oidc:ci:sub:repo:acme/app"],
    );
    let pin = attestors.environment_pin(&oidc).unwrap();
    assert_eq!(
        (pin.source.as_str(), pin.environments),
        ("oidc issuer ci", &["prod".to_owned()][..])
    );
    // A pinned attestor whose configuration cannot be told: fail closed.
    let unknown = attestation("k8s_psat", "k8s:?", &["k8s:ns:ns"]);
    assert_eq!(
        attestors
            .environment_pin(&unknown)
            .unwrap()
            .environments
            .len(),
        0
    );
    // No pins at all: nothing to check.
    let unpinned = pinned_attestors(&key, "", "");
    assert_eq!(unpinned.environment_pin(&staging), None);
    assert_eq!(unpinned.environment_pin(&unknown), None);
}

#[test]
fn environments_are_checked_at_config_load() {
    let key = TestKey::p256("k1");
    for (pin, needle) in [
        ("environments = []", "names no environment"),
        ("environments = [\"\"]", "is not an environment"),
        (
            "environments = [\"Prod\"]",
            "\"Prod\" is not an environment",
        ),
        (
            "environments = [\"prod\", \"prod\"]",
            "prod is listed twice",
        ),
    ] {
        let jwks = serde_json::Value::String(jwks_of(&[&key]));
        let config: AttestorsConfig = toml::from_str(&format!(
            "[[k8s_psat]]\ncluster = \"staging\"\nissuer = \"https://k8s\"\naudience = \"mayfly\"\njwks = {jwks}\n{pin}\n"
        ))
        .unwrap();
        let error = Attestors::new(&config).unwrap_err();
        assert!(
            matches!(error, AttestorConfigError::InvalidEnvironments { .. }),
            "{pin}: {error}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with("attestors.k8s_psat: cluster staging: environments: "),
            "{message}"
        );
        assert!(message.contains(needle), "{pin}: {message}");
    }
    // Positive control: a valid pin loads.
    let _ = pinned_attestors(
        &key,
        "environments = [\"prod\"]",
        "environments = [\"staging\"]",
    );
    // x509pop names its section too.
    let error = checked_pin("x509pop", Some(&[])).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("attestors.x509pop: environments: "),
        "{error}"
    );
}
