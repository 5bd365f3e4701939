//! Key rotation end to end, on the system clock with short lifetimes (an
//! accelerated clock that TLS can follow): two workloads keep doing mTLS
//! through the SDK's `X509Source` while the root goes through prepare ->
//! activate -> retire and the intermediate rotates on its own, with zero
//! failed handshakes; and a relying party keeps validating JWT-SVIDs through
//! `JwtVerifier` across several JWT key rotations with zero false rejections,
//! while a token signed by a retired key is rejected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::mtls::exchange;
use common::{TRUST_DOMAIN, TestBroker};
use mayfly::config::Config;
use mayfly_agent::RunningAgent;
use mayfly_sdk::SpiffeId;
use mayfly_sdk::jwt::Audience;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::workload::{Authorizer, JwtSource, JwtVerifier, WorkloadClient, X509Source};
use tempfile::TempDir;
use tonic::Code;

const AGENT_PATH: &str = "/agent/node-1";
const API_PATH: &str = "/billing/api";
const WEB_PATH: &str = "/billing/web";
const AUDIENCE: &str = "billing-db";

fn id(path: &str) -> SpiffeId {
    format!("spiffe://{TRUST_DOMAIN}{path}").parse().unwrap()
}

/// Lifetimes short enough to see several rotations in seconds.
fn accelerated(config: &mut Config, credential_ttl: Duration) {
    config.ttl.x509_max = credential_ttl;
    config.ttl.x509_default = credential_ttl;
    config.ttl.jwt_max = credential_ttl;
    config.ttl.jwt_default = credential_ttl;
    config.jwt_leeway = Duration::from_secs(1);
    config.bundle_refresh_hint = Duration::from_secs(1);
    config.rotation_check_interval = Duration::from_millis(200);
}

/// A broker, an agent, and two workload identities (this process) under it.
struct Setup {
    broker: TestBroker,
    dir: TempDir,
    agent: Option<RunningAgent>,
}

impl Setup {
    async fn start(configure: impl Fn(&mut Config) + Send + Sync + 'static) -> Setup {
        let broker = TestBroker::start_configured(configure).await;
        let dir = tempfile::tempdir().unwrap();
        let selector = format!("unix:uid:{}", common::my_uid(dir.path()));
        let token = broker.agent_join_token(AGENT_PATH).await;
        for path in [API_PATH, WEB_PATH] {
            let mut spec = TestBroker::entry_spec(path, &[AUDIENCE], &[&selector]);
            spec.parent_id = Some(id(AGENT_PATH).to_string());
            broker.create_entry_from(spec).await.unwrap();
        }
        let socket = dir.path().join("agent.sock");
        let config = broker.agent_config(socket, dir.path().join("agent"), Some(&token));
        let agent = mayfly_agent::start(config).await.unwrap();
        Setup {
            broker,
            dir,
            agent: Some(agent),
        }
    }

    async fn client(&self) -> WorkloadClient {
        let socket = self.dir.path().join("agent.sock");
        WorkloadClient::connect(&format!("unix://{}", socket.display()))
            .await
            .unwrap()
    }

    async fn ca_status(&self) -> pb::CaStatusResponse {
        self.broker
            .admin()
            .await
            .ca_status(pb::CaStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    async fn shutdown(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
        }
        self.broker.stop().await;
    }
}

fn count(status: &pb::CaStatusResponse, kind: &str, state: &str) -> usize {
    status
        .authorities
        .iter()
        .filter(|a| a.kind == kind && a.state == state)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_mtls_through_root_and_intermediate_rotation_has_zero_failed_handshakes() {
    let credential_ttl = Duration::from_secs(8);
    let setup = Setup::start(move |config| {
        accelerated(config, credential_ttl);
        config.intermediate_ttl = Duration::from_secs(24);
        config.publish_ahead = Duration::from_secs(2);
    })
    .await;
    let client = setup.client().await;
    let api = X509Source::for_spiffe_id(client.clone(), id(API_PATH))
        .await
        .unwrap();
    let web = X509Source::for_spiffe_id(client.clone(), id(WEB_PATH))
        .await
        .unwrap();
    let server = Arc::new(api.server_config(Authorizer::exact(id(WEB_PATH))).unwrap());
    let client_tls = Arc::new(web.client_config(Authorizer::exact(id(API_PATH))).unwrap());
    exchange(server.clone(), client_tls.clone()).await.unwrap();

    // Two workloads in continuous mTLS for the whole rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic = tokio::spawn({
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match exchange(server.clone(), client_tls.clone()).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        errors.push(error);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            errors
        }
    });
    let started = Instant::now();
    let mut admin = setup.broker.admin().await;

    // 1. Prepare: a second root joins the bundle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let prepared = admin
        .ca_prepare(pb::CaPrepareRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(prepared.events[0].to, "prepared");
    let new_root = prepared.events[0].id.clone();
    // /metrics shows the prepared successor (0 before, in tests/metrics.rs).
    let (_, metrics) = setup.broker.http_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line == r#"mayfly_ca_successor{kind="root"} 1"#),
        "{metrics}"
    );
    // Activating before the root was published long enough is refused.
    let early = admin
        .ca_activate(pb::CaActivateRequest { force: false })
        .await;
    assert_eq!(early.unwrap_err().code(), Code::FailedPrecondition);

    // 2. Activate after publish_ahead: new intermediates chain to the new root.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let activated = admin
        .ca_activate(pb::CaActivateRequest { force: false })
        .await
        .unwrap()
        .into_inner();
    assert!(
        activated
            .events
            .iter()
            .any(|e| e.id == new_root && e.to == "active")
    );

    // 3. Retire once nothing the old root signed is valid; refused before.
    let refused = admin.ca_retire(pb::CaRetireRequest { force: false }).await;
    let refused = refused.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("until"), "{refused:?}");
    let mut retired = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while retired.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        retired = admin
            .ca_retire(pb::CaRetireRequest { force: false })
            .await
            .ok()
            .map(tonic::Response::into_inner);
    }
    let retired = retired.expect("the old root retires once what it signed expired");
    assert!(
        retired
            .events
            .iter()
            .any(|e| e.kind == "root" && e.to == "retired")
    );

    // Meanwhile and after, the intermediate rotates on its own (half of 24 s).
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let status = setup.ca_status().await;
        if count(&status, "intermediate", "retired") >= 2 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the workloads renew across the last change.
    tokio::time::sleep(credential_ttl).await;
    stop.store(true, Ordering::Relaxed);
    let errors = traffic.await.unwrap();
    let status = setup.ca_status().await;
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "continuous mTLS over {:.0} s of rotation: {ok} handshakes, {failed} failed; \
         roots retired {}, intermediates retired {}, bundle sequence {}",
        started.elapsed().as_secs_f64(),
        count(&status, "root", "retired"),
        count(&status, "intermediate", "retired"),
        status.bundle_sequence
    );
    assert_eq!(failed, 0, "failed handshakes: {errors:?}");
    assert!(ok > 100, "too few handshakes to mean anything: {ok}");
    assert_eq!(count(&status, "root", "retired"), 1);
    assert_eq!(count(&status, "root", "active"), 1);
    assert!(count(&status, "intermediate", "retired") >= 2, "{status:?}");
    // The workloads now hold SVIDs of the new root only, and the bundle
    // holds only it.
    let root_now = setup.broker.root_der();
    assert_eq!(
        api.bundle().authorities_der(),
        std::slice::from_ref(&root_now)
    );
    let (verified, output) =
        common::openssl_verify(&root_now, api.svid().cert_chain_der(), "sslserver");
    assert!(verified, "{output}");
    setup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_verification_across_key_rotations_has_zero_false_rejections() {
    let credential_ttl = Duration::from_secs(4);
    let setup = Setup::start(move |config| {
        accelerated(config, credential_ttl);
        config.jwt_key_ttl = Duration::from_secs(6);
        config.publish_ahead = Duration::from_secs(2);
    })
    .await;
    let client = setup.client().await;
    let verifier = JwtVerifier::new(client.clone()).await.unwrap();
    let audience = Audience::new(AUDIENCE).unwrap();
    let sources = [
        JwtSource::for_spiffe_id(client.clone(), id(API_PATH)),
        JwtSource::for_spiffe_id(client.clone(), id(WEB_PATH)),
    ];
    // A copy of the first key, to sign with once it is retired.
    let first_key = active_jwt_key(&setup.broker.data_dir());
    let subject = id(API_PATH);

    let started = Instant::now();
    let mut kids = std::collections::BTreeSet::new();
    let (mut verified, mut rejected) = (0u64, Vec::new());
    while started.elapsed() < Duration::from_secs(20) {
        for source in &sources {
            let token = source.jwt(&audience).await.unwrap();
            kids.insert(kid_of(&token));
            match verifier.verify(&token, &audience) {
                Ok(_) => verified += 1,
                Err(error) => rejected.push(error.to_string()),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = setup.ca_status().await;
    println!(
        "JWT-SVIDs across key rotations: {verified} verified, {} falsely rejected, {} keys used, \
         {} keys retired",
        rejected.len(),
        kids.len(),
        count(&status, "jwt-key", "retired")
    );
    assert!(rejected.is_empty(), "false rejections: {rejected:?}");
    assert!(kids.len() >= 3, "several rotations expected: {kids:?}");
    assert!(count(&status, "jwt-key", "retired") >= 1, "{status:?}");

    // A token signed with the retired first key is refused; the same made
    // with the active key is the positive control.
    let now = mayfly::clock::unix_seconds(std::time::SystemTime::now());
    let forged = first_key
        .sign(&subject, &audience, now, now + 3)
        .unwrap()
        .token;
    let error = verifier.verify(&forged, &audience).unwrap_err();
    assert!(
        error.to_string().contains("kid") || error.to_string().contains("key"),
        "{error}"
    );
    let current = active_jwt_key(&setup.broker.data_dir());
    let genuine = current
        .sign(&subject, &audience, now, now + 3)
        .unwrap()
        .token;
    verifier.verify(&genuine, &audience).unwrap();
    setup.shutdown().await;
}

/// The JWT signer of the active key, read from the CA directory through its
/// journal (as an attacker with a stolen old key file would hold it).
fn active_jwt_key(data_dir: &std::path::Path) -> mayfly_ca::JwtSigner {
    let pem = std::fs::read(common::active_ca_file(data_dir, "jwt-key", "key")).unwrap();
    let key = mayfly_ca::keys::SigningKey::from_pkcs8_pem(&pem).unwrap();
    mayfly_ca::JwtSigner::new(&key).unwrap()
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}
