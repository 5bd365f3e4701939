//! Environment separation (issue 16) against a real broker: a workload
//! entry is in its agent's environment (checked at registration and again
//! at every agent mint), and an attestor configuration pinned to some
//! environments yields no identity of another. Every refusal is checked
//! with its message and audit record, next to a positive control.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{TRUST_DOMAIN, TestBroker};
use mayfly_sdk::proto::v1 as pb;
use tonic::Code;

fn id(path: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}{path}")
}

/// An X.509-only agent entry in `environment`.
async fn agent_entry(broker: &TestBroker, path: &str, environment: &str) -> pb::Entry {
    let mut spec = TestBroker::entry_spec(path, &[], &[]);
    spec.kinds = Some(pb::StringList {
        values: vec!["x509".into()],
    });
    spec.environment = Some(environment.into());
    broker.create_entry_from(spec).await.unwrap()
}

fn workload_spec(path: &str, environment: &str, parent: &str) -> pb::EntrySpec {
    let mut spec = TestBroker::entry_spec(path, &["orders"], &["unix:uid:1000"]);
    spec.environment = Some(environment.into());
    spec.parent_id = Some(id(parent));
    spec
}

fn environment_only(environment: &str) -> pb::EntrySpec {
    pb::EntrySpec {
        environment: Some(environment.into()),
        ..pb::EntrySpec::default()
    }
}

/// The audit records, parsed.
fn audit_records(broker: &TestBroker) -> Vec<serde_json::Value> {
    common::read_audit(&broker.data_dir())
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Checks a refusal's code and message, and that the last audit record is
/// the refusal of `action` with the same reason.
fn assert_refused(
    broker: &TestBroker,
    status: &tonic::Status,
    code: Code,
    action: &str,
    needles: &[&str],
) {
    assert_eq!(status.code(), code, "{status:?}");
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "{:?} lacks {needle:?}",
            status.message()
        );
    }
    let record = common::last_audit_record(&broker.data_dir());
    assert_eq!(record["action"], action, "{record}");
    assert_eq!(record["outcome"], "refused", "{record}");
    assert_eq!(record["reason"], status.message(), "{record}");
}

#[tokio::test]
async fn a_workload_is_registered_only_in_its_agents_environment() {
    let broker = TestBroker::start().await;
    let agent = agent_entry(&broker, "/agent/test-1", "test").await;

    // Positive control: same environment.
    let web = broker
        .create_entry_from(workload_spec("/web", "test", "/agent/test-1"))
        .await
        .unwrap();
    let last = common::last_audit_record(&broker.data_dir());
    assert_eq!(
        (&last["action"], &last["outcome"]),
        (&"entry.create".into(), &"ok".into())
    );

    // A production identity on a test node: refused, audited, not created.
    let status = broker
        .create_entry_from(workload_spec("/billing", "prod", "/agent/test-1"))
        .await
        .unwrap_err();
    assert_refused(
        &broker,
        &status,
        Code::FailedPrecondition,
        "entry.create",
        &[
            "\"prod\"",
            "\"test\"",
            &id("/billing"),
            &id("/agent/test-1"),
            &agent.id,
        ],
    );
    let record = common::last_audit_record(&broker.data_dir());
    assert_eq!(record["spiffe_id"], id("/billing"));
    assert_eq!(record["detail"]["rule"], "environment_separation");
    let missing = broker
        .admin()
        .await
        .get_entry(pb::GetEntryRequest { id: id("/billing") })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "nothing was created");

    // Moving the workload to another environment: refused the same way.
    let status = broker
        .update_entry(&web.id, environment_only("prod"))
        .await
        .unwrap_err();
    assert_refused(
        &broker,
        &status,
        Code::FailedPrecondition,
        "entry.update",
        &["\"prod\"", "\"test\"", &web.id, &agent.id],
    );
    let unchanged = broker
        .admin()
        .await
        .get_entry(pb::GetEntryRequest { id: web.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged.environment, "test");
    assert_eq!(unchanged.revision, web.revision);

    // Moving the agent away from its workloads: refused, naming them.
    let status = broker
        .update_entry(&agent.id, environment_only("prod"))
        .await
        .unwrap_err();
    assert_refused(
        &broker,
        &status,
        Code::FailedPrecondition,
        "entry.update",
        &["\"prod\"", "\"test\"", &agent.id, &id("/web"), &web.id],
    );
    // Positive control: an unrelated change of the agent passes.
    let updated = broker
        .update_entry(
            &agent.id,
            pb::EntrySpec {
                owner: Some("nodes@example.org".into()),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.environment, "test");
}

#[tokio::test]
async fn an_agent_registered_after_its_workloads_must_match_them() {
    let broker = TestBroker::start().await;
    // The agent is not registered yet: the workload is accepted.
    let early = broker
        .create_entry_from(workload_spec("/early", "prod", "/agent/later"))
        .await
        .unwrap();

    let mut spec = TestBroker::entry_spec("/agent/later", &["unused"], &[]);
    spec.environment = Some("test".into());
    let status = broker.create_entry_from(spec.clone()).await.unwrap_err();
    assert_refused(
        &broker,
        &status,
        Code::FailedPrecondition,
        "entry.create",
        &[
            "\"test\"",
            "\"prod\"",
            &id("/agent/later"),
            &id("/early"),
            &early.id,
        ],
    );
    // Positive control: the agent in its workload's environment.
    spec.environment = Some("prod".into());
    broker.create_entry_from(spec).await.unwrap();
}

/// The entries of the embedded store changed behind the admin API's back
/// (as by an older replica, or entries made before this rule): the agent
/// mint path still refuses, audited, and still serves the matching entry.
#[tokio::test]
async fn an_agent_mints_only_in_its_own_environment() {
    let mut broker = TestBroker::start().await;
    let agent_entry = agent_entry(&broker, "/agent/node-1", "test").await;
    let token = broker.join_token(&agent_entry.id, 0).await;
    let agent = broker.attest(&token).await.unwrap();
    let same = broker
        .create_entry_from(workload_spec("/web", "test", "/agent/node-1"))
        .await
        .unwrap();
    let moved = broker
        .create_entry_from(workload_spec("/billing", "test", "/agent/node-1"))
        .await
        .unwrap();

    // Move /billing to prod directly in the store, then restart.
    broker.stop().await;
    {
        use mayfly::store::{EmbeddedStore, Store};
        let store = EmbeddedStore::open(&broker.data_dir().join(EmbeddedStore::FILE_NAME)).unwrap();
        let id = mayfly::policy::EntryId::parse(&moved.id).unwrap();
        let mut entry = store.entry(&id).await.unwrap().unwrap();
        let revision = entry.revision;
        entry.environment = "prod".into();
        entry.revision += 1;
        store.update_entry(&entry, revision).await.unwrap();
    }
    broker.restart_after_stop().await;

    let mut client = broker.broker_as(&agent).await;
    let (_, csr_a) = mayfly_sdk::client::new_key_and_csr().unwrap();
    let (_, csr_b) = mayfly_sdk::client::new_key_and_csr().unwrap();
    let batch = client
        .batch_mint_x509_svids(pb::BatchMintX509SvidsRequest {
            params: vec![
                pb::X509SvidParams {
                    entry_id: same.id.clone(),
                    csr: csr_a,
                },
                pb::X509SvidParams {
                    entry_id: moved.id.clone(),
                    csr: csr_b,
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    // Positive control: the workload in the agent's environment.
    let svid = batch.results[0].svid.as_ref().expect("same environment");
    assert_eq!(svid.spiffe_id, id("/web"));
    let refused = batch.results[1].error.as_ref().expect("refused");
    assert_eq!(refused.code, Code::PermissionDenied as i32);
    for needle in [
        "\"test\"",
        "\"prod\"",
        agent_entry.id.as_str(),
        moved.id.as_str(),
        &id("/agent/node-1"),
        &id("/billing"),
    ] {
        assert!(
            refused.message.contains(needle),
            "{} lacks {needle}",
            refused.message
        );
    }

    let jwts = client
        .batch_mint_jwt_svids(pb::BatchMintJwtSvidsRequest {
            params: vec![
                pb::JwtSvidParams {
                    entry_id: same.id.clone(),
                    audience: "orders".into(),
                    ttl_seconds: 0,
                },
                pb::JwtSvidParams {
                    entry_id: moved.id.clone(),
                    audience: "orders".into(),
                    ttl_seconds: 0,
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(jwts.results[0].svid.is_some(), "{:?}", jwts.results[0]);
    let refused_jwt = jwts.results[1].error.as_ref().expect("refused");
    assert_eq!(refused_jwt.code, Code::PermissionDenied as i32);
    assert_eq!(refused_jwt.message, refused.message);

    // Both refusals are in the audit log, with their reason.
    let records = audit_records(&broker);
    for action in ["x509.issue", "jwt.mint"] {
        let record = records
            .iter()
            .rev()
            .find(|r| r["action"] == action && r["entry_id"] == moved.id.as_str())
            .unwrap_or_else(|| panic!("no {action} record for {}", moved.id));
        assert_eq!(record["outcome"], "refused", "{record}");
        assert_eq!(record["reason"], refused.message.as_str(), "{record}");
        assert_eq!(record["actor"], id("/agent/node-1"));
        let granted = records
            .iter()
            .rev()
            .find(|r| r["action"] == action && r["entry_id"] == same.id.as_str())
            .unwrap();
        assert_eq!(granted["outcome"], "granted", "{granted}");
    }
}

// ---------------------------------------------------------------------------
// An attestor pinned to some environments (Kubernetes PSAT).

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const K8S_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An RS256 service-account issuer key (what Kubernetes uses).
struct RsaIssuer {
    key: rcgen::KeyPair,
}

impl RsaIssuer {
    fn new() -> Self {
        RsaIssuer {
            key: rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
        }
    }

    fn jwks(&self) -> String {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        let spki_der = rcgen::PublicKeyData::subject_public_key_info(&self.key);
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki_der).unwrap();
        let PublicKey::RSA(rsa) = spki.parsed().unwrap() else {
            panic!("not RSA")
        };
        let trim = |b: &[u8]| {
            b.iter()
                .skip_while(|x| **x == 0)
                .copied()
                .collect::<Vec<u8>>()
        };
        serde_json::json!({ "keys": [{"kty": "RSA", "kid": "k8s-1", "use": "sig", "alg": "RS256",
            "n": B64.encode(trim(rsa.modulus)), "e": B64.encode(trim(rsa.exponent))}] })
        .to_string()
    }

    fn token(&self, sa: &str) -> String {
        use rcgen::SigningKey;
        let header = serde_json::json!({"alg": "RS256", "kid": "k8s-1", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": K8S_ISSUER, "aud": ["mayfly"], "sub": format!("system:serviceaccount:billing:{sa}"),
            "exp": now() + 600, "iat": now() - 5, "nbf": now() - 5,
            "kubernetes.io": {
                "namespace": "billing",
                "serviceaccount": {"name": sa, "uid": "11111111-2222-3333-4444-555555555555"},
            }
        });
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self.key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(signature))
    }
}

async fn attest_psat(broker: &TestBroker, token: String) -> Result<String, tonic::Status> {
    let (_, csr) = mayfly_sdk::client::new_key_and_csr().unwrap();
    let response = broker
        .broker()
        .await
        .attest_and_issue(pb::AttestAndIssueRequest {
            evidence: Some(pb::attest_and_issue_request::Evidence::K8sPsat(
                pb::K8sPsatEvidence { token },
            )),
            csr,
            spiffe_id: String::new(),
        })
        .await?
        .into_inner();
    Ok(response.svid.unwrap().spiffe_id)
}

#[tokio::test]
async fn a_staging_cluster_never_yields_a_prod_identity() {
    let issuer = RsaIssuer::new();
    let config = format!(
        "[[k8s_psat]]\ncluster = \"staging\"\nissuer = \"{K8S_ISSUER}\"\naudience = \"mayfly\"\njwks = {}\nenvironments = [\"staging\", \"test\"]\n",
        serde_json::Value::String(issuer.jwks())
    );
    let broker = TestBroker::start_with_attestors(&config).await;
    for (path, sa, environment) in [
        ("/staging/api", "api", "staging"),
        ("/prod/api", "prod-api", "prod"),
    ] {
        let mut spec = TestBroker::entry_spec(
            path,
            &["orders"],
            &[
                "k8s:cluster:staging",
                "k8s:ns:billing",
                &format!("k8s:sa:{sa}"),
            ],
        );
        spec.environment = Some(environment.into());
        broker.create_entry_from(spec).await.unwrap();
    }

    // Positive control: an identity of an allowed environment.
    let spiffe_id = attest_psat(&broker, issuer.token("api")).await.unwrap();
    assert_eq!(spiffe_id, id("/staging/api"));
    let record = common::last_audit_record(&broker.data_dir());
    assert_eq!(
        (&record["action"], &record["outcome"]),
        (&"attest".into(), &"granted".into())
    );

    let status = attest_psat(&broker, issuer.token("prod-api"))
        .await
        .unwrap_err();
    assert_refused(
        &broker,
        &status,
        Code::PermissionDenied,
        "attest",
        &[
            "k8s_psat cluster staging",
            "[staging, test]",
            "\"prod\"",
            &id("/prod/api"),
        ],
    );
    let record = common::last_audit_record(&broker.data_dir());
    assert_eq!(record["spiffe_id"], id("/prod/api"));
    assert_eq!(record["detail"]["attestor"], "k8s_psat");
    assert!(record["evidence_sha256"].is_string(), "{record}");
}

#[tokio::test]
async fn a_bad_environments_pin_stops_the_server_naming_the_setting() {
    let issuer = RsaIssuer::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path().join("data"));
    config.attestors = toml::from_str(&format!(
        "[[k8s_psat]]\ncluster = \"staging\"\nissuer = \"{K8S_ISSUER}\"\naudience = \"mayfly\"\njwks = {}\nenvironments = [\"staging\", \"staging\"]\n",
        serde_json::Value::String(issuer.jwks())
    ))
    .unwrap();
    let Err(error) = mayfly::server::start(config).await else {
        panic!("a duplicated environment must stop the server")
    };
    let message = error.to_string();
    assert!(
        message
            .contains("attestors.k8s_psat: cluster staging: environments: staging is listed twice"),
        "{message}"
    );
}
