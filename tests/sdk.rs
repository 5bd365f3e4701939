//! mayfly-sdk's workload side end to end: a real broker and agent
//! in-process (as in tests/agent.rs), and the SDK's `X509Source`,
//! `JwtSource` and `JwtVerifier` talking to the agent over its socket.
//!
//! Two entries share the selector `unix:uid:<this uid>` with different
//! SPIFFE IDs, so this one process holds two identities and plays both
//! ends of an mTLS connection. The broker and the agent share one manual
//! clock, so rotation is driven by moving the clock, not by sleeping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::mtls::exchange;
use common::{TRUST_DOMAIN, TestBroker};
use mayfly_agent::{AgentConfig, RunningAgent};
use mayfly_sdk::jose::JoseError;
use mayfly_sdk::jwt::{Audience, JwtSvidError};
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::workload::{
    Authorizer, JwtSource, JwtVerifier, WorkloadClient, WorkloadError, X509Source, X509Svid,
};
use mayfly_sdk::{SpiffeId, TrustDomain};
use tempfile::TempDir;

const AGENT_PATH: &str = "/agent/node-1";
/// The server end's identity; listed first by the agent (SPIFFE ID order).
const API_PATH: &str = "/billing/api";
/// The client end's identity.
const WEB_PATH: &str = "/billing/web";
const AUDIENCE: &str = "billing-db";
/// How long a test waits for something the agent does in the background.
const PATIENCE: Duration = Duration::from_secs(30);

fn id(path: &str) -> SpiffeId {
    format!("spiffe://{TRUST_DOMAIN}{path}").parse().unwrap()
}

fn audience(name: &str) -> Audience {
    Audience::new(name).unwrap()
}

/// A broker, two workload entries for this process under one agent, and
/// the running agent.
struct Setup {
    broker: TestBroker,
    dir: TempDir,
    agent: Option<RunningAgent>,
}

impl Setup {
    /// Registers the agent and, under it, one entry per path of
    /// `workloads` for `selector` (`None`: this process's uid) with
    /// `x509_ttl`; starts the agent.
    async fn start(workloads: &[&str], selector: Option<&str>, x509_ttl: Option<u32>) -> Setup {
        let broker = TestBroker::start().await;
        let dir = tempfile::tempdir().unwrap();
        let own_selector = format!("unix:uid:{}", common::my_uid(dir.path()));
        let token = broker.agent_join_token(AGENT_PATH).await;
        for path in workloads {
            let mut spec =
                TestBroker::entry_spec(path, &[AUDIENCE], &[selector.unwrap_or(&own_selector)]);
            spec.parent_id = Some(id(AGENT_PATH).to_string());
            spec.x509_ttl_seconds = x509_ttl;
            broker.create_entry_from(spec).await.unwrap();
        }
        let mut setup = Setup {
            broker,
            dir,
            agent: None,
        };
        setup.agent = Some(
            mayfly_agent::start(setup.config(Some(&token)))
                .await
                .unwrap(),
        );
        setup
    }

    /// The agent's config; `token` is needed only for its first start.
    fn config(&self, token: Option<&str>) -> AgentConfig {
        self.broker
            .agent_config(self.socket(), self.dir.path().join("agent"), token)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run").join("agent.sock")
    }

    /// A client, connected as a workload would be, from the
    /// `SPIFFE_ENDPOINT_SOCKET` form of the address.
    async fn client(&self) -> WorkloadClient {
        WorkloadClient::connect(&format!("unix://{}", self.socket().display()))
            .await
            .unwrap()
    }

    /// The broker's root CA, DER.
    fn root_der(&self) -> Vec<u8> {
        self.broker.root_der()
    }

    async fn shutdown(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
        }
        self.broker.stop().await;
    }
}

/// The leaf's serial number, hex.
fn serial(leaf_der: &[u8]) -> String {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(leaf_der).unwrap();
    cert.raw_serial_as_string()
}

#[tokio::test]
async fn x509_sources_do_mtls_and_authorize_the_peer_by_spiffe_id() {
    let setup = Setup::start(&[API_PATH, WEB_PATH], None, None).await;
    let client = setup.client().await;

    // The default is the first SVID the agent lists; a source can follow
    // another of the workload's identities by SPIFFE ID.
    let default = X509Source::new(client.clone()).await.unwrap();
    assert_eq!(default.svid().spiffe_id(), &id(API_PATH));
    let api = X509Source::for_spiffe_id(client.clone(), id(API_PATH))
        .await
        .unwrap();
    let web = X509Source::for_spiffe_id(client.clone(), id(WEB_PATH))
        .await
        .unwrap();
    assert_eq!(web.svid().spiffe_id(), &id(WEB_PATH));
    assert_eq!(web.context().svids().len(), 2);
    let missing = X509Source::for_spiffe_id(client.clone(), id("/billing/nobody")).await;
    assert!(
        matches!(missing, Err(WorkloadError::NoSuitableSvid { .. })),
        "{missing:?}"
    );

    // What the sources hold is a real X509-SVID, by an independent verifier;
    // the bundle is the broker's root; the key never shows in Debug.
    for (source, purpose) in [(&api, "sslserver"), (&web, "sslclient")] {
        let svid = source.svid();
        common::assert_x509_svid_profile(svid.leaf_der(), svid.spiffe_id().as_str());
        let (verified, output) =
            common::openssl_verify(&setup.root_der(), svid.cert_chain_der(), purpose);
        assert!(verified, "openssl verify: {output}");
        assert_eq!(source.bundle().authorities_der(), [setup.root_der()]);
        let debug = format!("{svid:?}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(!debug.contains(&format!("{:?}", svid.private_key_pkcs8_der())));
        assert!(!svid.private_key_pkcs8_der().is_empty());
    }

    // Positive control: each end authorizes exactly the other.
    let server = Arc::new(api.server_config(Authorizer::exact(id(WEB_PATH))).unwrap());
    let client_tls = Arc::new(web.client_config(Authorizer::exact(id(API_PATH))).unwrap());
    let seen = exchange(server.clone(), client_tls.clone()).await.unwrap();
    assert_eq!(seen.reply, format!("hello {}", id(WEB_PATH)));
    assert_eq!(seen.server_leaf, api.svid().leaf_der());
    assert_eq!(seen.client_leaf, web.svid().leaf_der());
    // Any SPIFFE ID of the trust domain, or one of a list, works too.
    let domain = Authorizer::any_in_trust_domain(TrustDomain::new(TRUST_DOMAIN).unwrap());
    let either = Authorizer::one_of([id("/billing/nobody"), id(WEB_PATH)]);
    let lenient_server = Arc::new(api.server_config(either).unwrap());
    let lenient_client = Arc::new(web.client_config(domain).unwrap());
    exchange(lenient_server, lenient_client).await.unwrap();

    // The client expects another server: the handshake fails.
    let wrong_server_expected = Arc::new(
        web.client_config(Authorizer::exact(id("/billing/db")))
            .unwrap(),
    );
    let refused = exchange(server.clone(), wrong_server_expected).await;
    assert!(refused.is_err(), "a client accepted the wrong server");
    assert!(
        format!("{refused:?}").contains("PeerNotAuthorized"),
        "{refused:?}"
    );

    // The server expects another client: the connection fails.
    let wrong_client_expected = Arc::new(
        api.server_config(Authorizer::exact(id("/billing/db")))
            .unwrap(),
    );
    let refused = exchange(wrong_client_expected, client_tls.clone()).await;
    assert!(refused.is_err(), "a server accepted the wrong client");
    assert!(
        format!("{refused:?}").contains("PeerNotAuthorized"),
        "{refused:?}"
    );

    // Another trust domain is never authorized, whatever the chain.
    let other_domain = Authorizer::any_in_trust_domain(TrustDomain::new("other.org").unwrap());
    let refused = exchange(
        server.clone(),
        Arc::new(web.client_config(other_domain).unwrap()),
    )
    .await;
    assert!(
        refused.is_err(),
        "a peer of another trust domain was accepted"
    );

    // And the positive control still holds afterwards.
    exchange(server, client_tls).await.unwrap();
    setup.shutdown().await;
}

#[tokio::test]
async fn a_rotation_reaches_the_source_and_the_next_handshake_without_a_new_config() {
    // 20 s X509-SVIDs, renewed by the agent at about half their life.
    let setup = Setup::start(&[API_PATH, WEB_PATH], None, Some(20)).await;
    let client = setup.client().await;
    let api = X509Source::for_spiffe_id(client.clone(), id(API_PATH))
        .await
        .unwrap();
    let web = X509Source::for_spiffe_id(client.clone(), id(WEB_PATH))
        .await
        .unwrap();
    // The configs are built once, before the rotation.
    let server = Arc::new(api.server_config(Authorizer::exact(id(WEB_PATH))).unwrap());
    let client_tls = Arc::new(web.client_config(Authorizer::exact(id(API_PATH))).unwrap());

    let before = exchange(server.clone(), client_tls.clone()).await.unwrap();
    let old_server_serial = serial(&before.server_leaf);
    let old_client_serial = serial(&before.client_leaf);
    assert_eq!(old_server_serial, serial(api.svid().leaf_der()));

    let mut api_updates = api.updated();
    let mut web_updates = web.updated();
    assert_eq!(*api_updates.borrow_and_update(), 0);

    // Not yet at half life: nothing new.
    setup.broker.clock.advance(Duration::from_secs(5));
    let quiet = tokio::time::timeout(Duration::from_secs(1), api_updates.changed()).await;
    assert!(quiet.is_err(), "an update before half life");

    // Past half life: both sources see their new SVID.
    setup.broker.clock.advance(Duration::from_secs(6));
    for updates in [&mut api_updates, &mut web_updates] {
        tokio::time::timeout(PATIENCE, updates.changed())
            .await
            .expect("a rotation observed by updated()")
            .expect("the source is still following the agent");
        assert!(*updates.borrow_and_update() >= 1);
    }
    let rotated = api.svid();
    assert_eq!(rotated.spiffe_id(), &id(API_PATH));
    assert_ne!(serial(rotated.leaf_der()), old_server_serial);
    let (verified, output) =
        common::openssl_verify(&setup.root_der(), rotated.cert_chain_der(), "sslserver");
    assert!(verified, "openssl verify of the rotated SVID: {output}");

    // The same configs now present the new certificates, both ways.
    let after = exchange(server, client_tls).await.unwrap();
    assert_eq!(after.server_leaf, rotated.leaf_der());
    assert_ne!(serial(&after.server_leaf), old_server_serial);
    assert_eq!(after.client_leaf, web.svid().leaf_der());
    assert_ne!(serial(&after.client_leaf), old_client_serial);
    assert!(api.is_following() && web.is_following());
    setup.shutdown().await;
}

#[tokio::test]
async fn jwt_source_tokens_pass_the_verifier_only_for_their_audience_and_untampered() {
    let setup = Setup::start(&[API_PATH, WEB_PATH], None, None).await;
    let client = setup.client().await;
    let source = JwtSource::new(client.clone());
    let verifier = JwtVerifier::new(client.clone()).await.unwrap();
    let trust_domain = TrustDomain::new(TRUST_DOMAIN).unwrap();
    assert!(
        verifier
            .bundles()
            .get(&trust_domain)
            .is_some_and(|keys| !keys.is_empty())
    );

    // A token for the audience, for the first identity; cached on reuse.
    let token = source.jwt(&audience(AUDIENCE)).await.unwrap();
    assert_eq!(source.jwt(&audience(AUDIENCE)).await.unwrap(), token);
    let validated = verifier.verify(&token, &audience(AUDIENCE)).unwrap();
    assert_eq!(validated.spiffe_id, id(API_PATH));
    assert_eq!(validated.audience, [AUDIENCE]);
    // The agent agrees (an independent path: its own validator).
    let by_agent = client
        .validate_jwt_svid(&token, &audience(AUDIENCE))
        .await
        .unwrap();
    assert_eq!(by_agent.spiffe_id, id(API_PATH));
    assert_eq!(by_agent.claims["aud"], AUDIENCE);

    // The other identity, by SPIFFE ID.
    let web = JwtSource::for_spiffe_id(client.clone(), id(WEB_PATH));
    let web_token = web.jwt(&audience(AUDIENCE)).await.unwrap();
    assert_eq!(
        verifier
            .verify(&web_token, &audience(AUDIENCE))
            .unwrap()
            .spiffe_id,
        id(WEB_PATH)
    );

    // A wrong audience is refused.
    let wrong = verifier.verify(&token, &audience("reports"));
    assert!(
        matches!(
            wrong,
            Err(WorkloadError::InvalidJwtSvid {
                reason: JwtSvidError::WrongAudience { .. }
            })
        ),
        "{wrong:?}"
    );

    // Tampered tokens are refused: a changed signature, and claims naming
    // another subject under the original signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut signature = parts[2].clone().into_bytes();
    signature[10] = if signature[10] == b'A' { b'B' } else { b'A' };
    parts[2] = String::from_utf8(signature).unwrap();
    let bad_signature = verifier.verify(&parts.join("."), &audience(AUDIENCE));
    assert!(
        matches!(
            bad_signature,
            Err(WorkloadError::InvalidJwtSvid {
                reason: JwtSvidError::Jose(JoseError::BadSignature { .. })
            })
        ),
        "{bad_signature:?}"
    );
    let original: Vec<&str> = token.split('.').collect();
    let forged_claims = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(original[1]).unwrap()).unwrap();
        claims["sub"] = id(WEB_PATH).to_string().into();
        b64.encode(claims.to_string())
    };
    let forged = format!("{}.{forged_claims}.{}", original[0], original[2]);
    let refused = verifier.verify(&forged, &audience(AUDIENCE));
    assert!(
        matches!(
            refused,
            Err(WorkloadError::InvalidJwtSvid {
                reason: JwtSvidError::Jose(JoseError::BadSignature { .. })
            })
        ),
        "{refused:?}"
    );
    // Expired, judged at a later time.
    let late = verifier.verify_at(&token, &audience(AUDIENCE), validated.expires_at + 3600);
    assert!(
        matches!(
            late,
            Err(WorkloadError::InvalidJwtSvid {
                reason: JwtSvidError::Expired { .. }
            })
        ),
        "{late:?}"
    );
    // And the positive control again, so nothing above broke the verifier.
    assert!(verifier.verify(&token, &audience(AUDIENCE)).is_ok());

    // An audience the entries do not allow: the agent refuses to mint.
    let denied = source.jwt(&audience("not-allowed")).await;
    assert!(
        matches!(denied, Err(WorkloadError::PermissionDenied { .. })),
        "{denied:?}"
    );
    setup.shutdown().await;
}

#[tokio::test]
async fn a_workload_without_an_identity_is_told_at_once() {
    // The only workload entry is for another uid.
    let dir = tempfile::tempdir().unwrap();
    let other = format!("unix:uid:{}", common::my_uid(dir.path()) + 1);
    let setup = Setup::start(&[API_PATH], Some(&other), None).await;
    let client = setup.client().await;
    let refused = tokio::time::timeout(PATIENCE, X509Source::new(client.clone()))
        .await
        .expect("refused at once, not retried");
    assert!(
        matches!(refused, Err(WorkloadError::NoIdentityIssued)),
        "{refused:?}"
    );
    let refused = tokio::time::timeout(PATIENCE, JwtVerifier::new(client.clone()))
        .await
        .expect("refused at once, not retried");
    assert!(
        matches!(refused, Err(WorkloadError::NoIdentityIssued)),
        "{refused:?}"
    );
    let refused = JwtSource::new(client).jwt(&audience(AUDIENCE)).await;
    assert!(
        matches!(refused, Err(WorkloadError::NoIdentityIssued)),
        "{refused:?}"
    );

    // Endpoints: a missing socket is Unavailable, a TCP address is refused.
    let gone = WorkloadClient::connect(&format!(
        "unix://{}",
        dir.path().join("none.sock").display()
    ))
    .await;
    assert!(
        matches!(gone, Err(WorkloadError::Unavailable { .. })),
        "{gone:?}"
    );
    let tcp = WorkloadClient::connect("tcp://127.0.0.1:8081").await;
    assert!(
        matches!(tcp, Err(WorkloadError::InvalidEndpoint { .. })),
        "{tcp:?}"
    );
    setup.shutdown().await;
}

#[tokio::test]
async fn a_source_reconnects_after_the_agent_restarts() {
    let mut setup = Setup::start(&[API_PATH], None, Some(20)).await;
    let client = setup.client().await;
    let source = X509Source::new(client).await.unwrap();
    let mut updates = source.updated();
    let first = source.svid();

    // The agent goes away: the source keeps serving what it has.
    setup.agent.take().unwrap().shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(source.svid().leaf_der(), first.leaf_der());
    assert!(
        source.is_following(),
        "the source gave up on a missing agent"
    );

    // It comes back on its saved identity; past half life it rotates, and
    // the rotation reaches the source only over a new stream.
    setup.agent = Some(mayfly_agent::start(setup.config(None)).await.unwrap());
    setup.broker.clock.advance(Duration::from_secs(11));
    let rotated = tokio::time::timeout(PATIENCE, async {
        loop {
            updates.changed().await.expect("still following");
            let svid = source.svid();
            if serial(svid.leaf_der()) != serial(first.leaf_der()) {
                return svid;
            }
        }
    })
    .await
    .expect("an SVID from the restarted agent");
    assert_eq!(rotated.spiffe_id(), &id(API_PATH));

    // Dropping the source (its last clone) stops its task: receivers hear so.
    drop(source);
    let closed = tokio::time::timeout(PATIENCE, updates.changed()).await;
    assert!(matches!(closed, Ok(Err(_))), "{closed:?}");
    setup.shutdown().await;
}

#[tokio::test]
async fn the_verifier_and_the_agent_reject_a_revoked_token() {
    use mayfly_sdk::revocation::RevocationWatch;
    let setup = Setup::start(&[API_PATH, WEB_PATH], None, None).await;
    let client = setup.client().await;
    let watch = RevocationWatch::from_client(setup.broker.broker().await)
        .await
        .unwrap();
    let verifier = JwtVerifier::new(client.clone())
        .await
        .unwrap()
        .with_revocations(watch);
    let token = JwtSource::new(client.clone())
        .jwt(&audience(AUDIENCE))
        .await
        .unwrap();
    let web_token = JwtSource::for_spiffe_id(client.clone(), id(WEB_PATH))
        .jwt(&audience(AUDIENCE))
        .await
        .unwrap();
    let jti = verifier
        .verify(&token, &audience(AUDIENCE))
        .unwrap()
        .jti
        .unwrap();
    client
        .validate_jwt_svid(&token, &audience(AUDIENCE))
        .await
        .unwrap();

    let started = std::time::Instant::now();
    setup
        .broker
        .admin()
        .await
        .revoke(pb::RevokeRequest {
            kind: "jti".into(),
            value: jti,
            reason: "sdk test".into(),
        })
        .await
        .unwrap();
    let mut verifier_took = None;
    let mut agent_took = None;
    // How fast is printed, not asserted: the deadline only bounds a broken
    // watch on a busy machine.
    while started.elapsed() < Duration::from_secs(10)
        && (verifier_took.is_none() || agent_took.is_none())
    {
        if verifier_took.is_none()
            && matches!(
                verifier.verify(&token, &audience(AUDIENCE)),
                Err(WorkloadError::Revoked { .. })
            )
        {
            verifier_took = Some(started.elapsed());
        }
        if agent_took.is_none()
            && client
                .validate_jwt_svid(&token, &audience(AUDIENCE))
                .await
                .is_err()
        {
            agent_took = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let verifier_took = verifier_took.expect("the SDK verifier rejects the revoked token");
    let agent_took = agent_took.expect("the agent rejects the revoked token");
    println!(
        "revoke -> rejected: SDK JwtVerifier {:.1} ms, agent ValidateJWTSVID {:.1} ms",
        verifier_took.as_secs_f64() * 1e3,
        agent_took.as_secs_f64() * 1e3
    );
    let refused = client
        .validate_jwt_svid(&token, &audience(AUDIENCE))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("revoked"), "{refused}");
    // Positive control: the other workload's token passes both.
    verifier.verify(&web_token, &audience(AUDIENCE)).unwrap();
    client
        .validate_jwt_svid(&web_token, &audience(AUDIENCE))
        .await
        .unwrap();
    setup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_through_x509_sources_refuses_a_peer_revoked_at_the_broker() {
    use mayfly_sdk::revocation::RevocationWatch;
    let setup = Setup::start(&[API_PATH, WEB_PATH], None, None).await;
    let client = setup.client().await;
    let watch = RevocationWatch::from_client(setup.broker.broker().await)
        .await
        .unwrap();
    let api = X509Source::for_spiffe_id(client.clone(), id(API_PATH))
        .await
        .unwrap()
        .with_revocations(watch.clone());
    let web = X509Source::for_spiffe_id(client.clone(), id(WEB_PATH))
        .await
        .unwrap()
        .with_revocations(watch);
    let server = Arc::new(api.server_config(Authorizer::exact(id(WEB_PATH))).unwrap());
    let client_tls = Arc::new(web.client_config(Authorizer::exact(id(API_PATH))).unwrap());
    // The agent replaces a revoked SVID, and the source then presents the
    // new one: to see the server refuse the revoked certificate, this
    // client keeps presenting it, whatever the source holds.
    let revoked_svid = web.svid();
    let pinned_tls = Arc::new(presenting(
        web.client_config(Authorizer::exact(id(API_PATH))).unwrap(),
        &revoked_svid,
    ));
    // Positive controls, before the revocation.
    exchange(server.clone(), client_tls.clone()).await.unwrap();
    exchange(server.clone(), pinned_tls.clone()).await.unwrap();

    let web_serial = serial(revoked_svid.leaf_der());
    setup
        .broker
        .admin()
        .await
        .revoke(pb::RevokeRequest {
            kind: "serial".into(),
            value: web_serial.clone(),
            reason: "client key leaked".into(),
        })
        .await
        .unwrap();
    // How fast is measured, not asserted (the tests run beside each other
    // on a busy machine): the deadline only bounds a broken watch.
    let started = std::time::Instant::now();
    let mut refused = None;
    while started.elapsed() < Duration::from_secs(10) {
        if let Err(error) = exchange(server.clone(), pinned_tls.clone()).await {
            refused = Some(error);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = refused.expect("the server refuses the revoked client");
    println!(
        "revoked client refused {:.0} ms after the revoke returned",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        refused.contains("revocation") || refused.contains("revoked"),
        "{refused}"
    );
    // And the workload itself goes on: the agent hands it a new SVID,
    // which the same server accepts.
    let mut updates = web.updated();
    while serial(web.svid().leaf_der()) == web_serial {
        tokio::time::timeout(Duration::from_secs(10), updates.changed())
            .await
            .expect("the agent replaces the revoked SVID")
            .unwrap();
    }
    let accepted = exchange(server.clone(), client_tls.clone()).await.unwrap();
    assert_ne!(serial(&accepted.client_leaf), web_serial);
    setup.shutdown().await;
}

/// `config`, presenting `svid` whatever its source holds later.
fn presenting(mut config: rustls::ClientConfig, svid: &X509Svid) -> rustls::ClientConfig {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::sign::{CertifiedKey, SingleCertAndKey};
    let chain = svid
        .cert_chain_der()
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        svid.private_key_pkcs8_der().to_vec(),
    ));
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).unwrap();
    config.client_auth_cert_resolver = Arc::new(SingleCertAndKey::from(certified));
    config
}

#[tokio::test]
async fn a_jwt_source_with_revocations_never_hands_out_a_revoked_token_again() {
    use mayfly_sdk::revocation::RevocationWatch;
    let setup = Setup::start(&[API_PATH], None, None).await;
    let client = setup.client().await;
    let watch = RevocationWatch::from_client(setup.broker.broker().await)
        .await
        .unwrap();
    let set = watch.set().clone();
    let source = JwtSource::new(client.clone()).with_revocations(watch);
    let first = source.jwt_svid(&audience(AUDIENCE)).await.unwrap();
    // Positive control: the cache answers.
    let again = source.jwt_svid(&audience(AUDIENCE)).await.unwrap();
    assert_eq!(again.token(), first.token());
    let jti = first.jti().expect("a jti").to_owned();

    setup
        .broker
        .admin()
        .await
        .revoke(pb::RevokeRequest {
            kind: "jti".into(),
            value: jti.clone(),
            reason: "sdk cache test".into(),
        })
        .await
        .unwrap();
    // Once the source's set has heard, its cache must not answer with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while set
        .get(mayfly_sdk::revocation::RevocationKind::Jti, &jti)
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the watch never heard"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let next = source.jwt_svid(&audience(AUDIENCE)).await.unwrap();
    assert_ne!(
        next.token(),
        first.token(),
        "the revoked token came from the cache"
    );
    assert_ne!(next.jti(), Some(jti.as_str()));
    client
        .validate_jwt_svid(next.token(), &audience(AUDIENCE))
        .await
        .unwrap();
    // And the new one is cached again.
    let cached = source.jwt_svid(&audience(AUDIENCE)).await.unwrap();
    assert_eq!(cached.token(), next.token());
    setup.shutdown().await;
}
