//! The node agent end to end: a real broker in-process, the agent in-process
//! on a temporary Unix socket, and the independent `spiffe` crate (rust-spiffe)
//! as the Workload API client.
//!
//! The broker and the agent share one manual clock, so rotation is driven by
//! moving the clock, not by sleeping through half a certificate's life.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::Duration;

use common::{TRUST_DOMAIN, TestBroker};
use mayfly_agent::{AgentConfig, AgentError, RunningAgent};
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::workload as wl;
use tempfile::TempDir;
use tokio_stream::StreamExt as _;
use tonic::Code;

const AGENT_PATH: &str = "/agent/node-1";
const WORKLOAD_PATH: &str = "/billing/api";
const AUDIENCE: &str = "billing-db";
/// How long a test waits for something the agent does in the background.
const PATIENCE: Duration = Duration::from_secs(30);

fn agent_id() -> String {
    format!("spiffe://{TRUST_DOMAIN}{AGENT_PATH}")
}

fn workload_id() -> String {
    format!("spiffe://{TRUST_DOMAIN}{WORKLOAD_PATH}")
}

/// A broker, an agent entry with a join token, and a running agent.
struct Setup {
    broker: TestBroker,
    dir: TempDir,
    token: String,
    uid: u32,
    agent: Option<RunningAgent>,
}

impl Setup {
    /// Registers the agent, and one workload entry under it for `selector`
    /// (`None`: this process's uid) with `x509_ttl`; starts the agent.
    async fn start(selector: Option<&str>, x509_ttl: Option<u32>) -> (Setup, pb::Entry) {
        let broker = TestBroker::start().await;
        let dir = tempfile::tempdir().unwrap();
        let uid = common::my_uid(dir.path());
        // The agent's own entry: X.509 only, attested by its join token.
        let token = broker.agent_join_token(AGENT_PATH).await;
        let own_selector = format!("unix:uid:{uid}");
        let mut spec = TestBroker::entry_spec(
            WORKLOAD_PATH,
            &[AUDIENCE],
            &[selector.unwrap_or(&own_selector)],
        );
        spec.parent_id = Some(agent_id());
        spec.x509_ttl_seconds = x509_ttl;
        let workload = broker.create_entry_from(spec).await.unwrap();
        let mut setup = Setup {
            broker,
            dir,
            token,
            uid,
            agent: None,
        };
        let token = setup.token.clone();
        setup.agent = Some(
            mayfly_agent::start(setup.config(Some(&token)))
                .await
                .unwrap(),
        );
        (setup, workload)
    }

    fn config(&self, token: Option<&str>) -> AgentConfig {
        self.broker
            .agent_config(self.socket(), self.dir.path().join("agent"), token)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run").join("agent.sock")
    }

    fn agent(&self) -> &RunningAgent {
        self.agent.as_ref().unwrap()
    }

    async fn client(&self) -> spiffe::WorkloadApiClient {
        spiffe::WorkloadApiClient::connect_to(format!("unix:{}", self.socket().display()))
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

fn with_header<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    request
}

/// Polls `check` every 100 ms until it returns `Some`, for at most [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The leaf's serial number, hex.
fn serial(leaf_der: &[u8]) -> String {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(leaf_der).unwrap();
    cert.raw_serial_as_string()
}

fn chain_of(svid: &spiffe::X509Svid) -> Vec<Vec<u8>> {
    svid.cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect()
}

#[tokio::test]
async fn spiffe_client_gets_x509_and_jwt_svids_and_bundles_from_the_agent() {
    let (setup, _) = Setup::start(None, None).await;
    assert_eq!(setup.agent().spiffe_id().as_str(), agent_id());
    let client = setup.client().await;
    let trust_domain = spiffe::TrustDomain::new(TRUST_DOMAIN).unwrap();

    // X509-SVID: the registered identity, a chain an independent verifier
    // accepts, and a private key the client could parse and match.
    let svid = client.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), workload_id());
    let chain = chain_of(&svid);
    common::assert_x509_svid_profile(&chain[0], &workload_id());
    let (verified, output) = common::openssl_verify(&setup.root_der(), &chain, "sslclient");
    assert!(verified, "openssl verify: {output}");

    // X.509 bundles: the broker's root, keyed by the trust domain.
    let bundles = client.fetch_x509_bundles().await.unwrap();
    let bundle = bundles
        .get(&trust_domain)
        .expect("a bundle for the trust domain");
    let roots: Vec<&[u8]> = bundle.authorities().iter().map(|c| c.as_bytes()).collect();
    assert_eq!(roots, [setup.root_der().as_slice()]);

    // JWT-SVID for the audience; the broker agrees it is valid.
    let jwt = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
    assert_eq!(jwt.spiffe_id().to_string(), workload_id());
    assert_eq!(jwt.audience(), [AUDIENCE]);
    let checked = setup.broker.validate(jwt.token(), AUDIENCE).await.unwrap();
    assert_eq!(checked.spiffe_id, workload_id());
    // Asked again, the same token comes from the cache.
    let again = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
    assert_eq!(again.token(), jwt.token());
    // By SPIFFE ID, too.
    let by_id: spiffe::SpiffeId = workload_id().parse().unwrap();
    let named = client
        .fetch_jwt_svid(&[AUDIENCE], Some(&by_id))
        .await
        .unwrap();
    assert_eq!(named.spiffe_id(), &by_id);

    // JWT bundles: a JWKS holding the key that signed the token, which an
    // independent JOSE library accepts.
    let jwt_bundles = client.fetch_jwt_bundles().await.unwrap();
    let jwt_bundle = jwt_bundles.get(&trust_domain).expect("a JWT bundle");
    assert!(jwt_bundle.find_jwt_authority(jwt.key_id()).is_some());
    let mut raw = common::raw_workload_client(&setup.socket()).await;
    let jwks = raw
        .fetch_jwt_bundles(with_header(wl::JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let jwks =
        String::from_utf8(jwks.bundles[&format!("spiffe://{TRUST_DOMAIN}")].clone()).unwrap();
    assert_eq!(
        common::jwt_simple_verify(&jwks, jwt.token(), AUDIENCE).unwrap(),
        workload_id()
    );

    // Validation by the agent: the SPIFFE ID and the claims; a wrong
    // audience is refused (positive control first).
    let validated = client
        .validate_jwt_token(AUDIENCE, jwt.token())
        .await
        .unwrap();
    assert_eq!(validated.spiffe_id().to_string(), workload_id());
    let refused = client
        .validate_jwt_token("another-audience", jwt.token())
        .await;
    assert!(
        refused.is_err(),
        "a token for {AUDIENCE} validated for another audience"
    );
    let response = raw
        .validate_jwtsvid(with_header(wl::ValidateJwtsvidRequest {
            audience: AUDIENCE.into(),
            svid: jwt.token().into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let claims = response.claims.unwrap().fields;
    use prost_types::value::Kind;
    assert_eq!(claims["sub"].kind, Some(Kind::StringValue(workload_id())));
    assert!(matches!(claims["exp"].kind, Some(Kind::NumberValue(_))));

    let health = setup.agent().health();
    assert!(health.is_healthy(), "{health:?}");
    assert_eq!(health.entries, 1);
    assert_eq!(health.x509_svids, 1);
    setup.shutdown().await;
}

#[tokio::test]
async fn an_entry_that_requires_unique_jti_is_not_served_from_the_agents_cache() {
    let (setup, workload) = Setup::start(None, None).await;
    let client = setup.client().await;
    let jti = |token: String| {
        let broker = &setup.broker;
        async move { broker.validate(&token, AUDIENCE).await.unwrap().jti }
    };
    // Positive control: by default the agent hands out its cached token.
    let first = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
    let again = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
    assert_eq!(again.token(), first.token());

    setup
        .broker
        .update_entry(
            &workload.id,
            pb::EntrySpec {
                unique_jti: Some(true),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    // Once the agent has synced the entry, every request is a fresh token.
    eventually("the agent to stop reusing JWT-SVIDs", || async {
        let a = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
        let b = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
        (a.token() != b.token()).then_some(())
    })
    .await;
    let mut jtis = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let svid = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
        assert_eq!(svid.spiffe_id().to_string(), workload_id());
        jtis.insert(jti(svid.token().to_owned()).await);
    }
    assert_eq!(jtis.len(), 3, "{jtis:?}");
    assert!(!jtis.contains(&jti(first.token().to_owned()).await));
    setup.shutdown().await;
}

#[tokio::test]
async fn a_caller_no_entry_matches_is_denied_no_identity_issued() {
    let (setup, workload) = Setup::start(None, None).await;
    let client = setup.client().await;

    // Positive control: the entry names this process's uid.
    assert!(client.fetch_x509_svid().await.is_ok());
    let mut open_stream = client.stream_x509_svids().await.unwrap();
    assert!(open_stream.next().await.unwrap().is_ok());

    // Now the only entry is for another uid.
    let other = format!("unix:uid:{}", setup.uid + 1);
    setup
        .broker
        .update_entry(
            &workload.id,
            pb::EntrySpec {
                selectors: Some(pb::StringList {
                    values: vec![other],
                }),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    let denied = eventually("the agent to drop the identity", || async {
        client.fetch_x509_svid().await.err()
    })
    .await;
    assert!(
        matches!(denied, spiffe::WorkloadApiError::NoIdentityIssued),
        "{denied:?}"
    );
    // The open stream is told too, and ends.
    let last = tokio::time::timeout(PATIENCE, open_stream.next())
        .await
        .unwrap();
    assert!(
        matches!(last, Some(Err(spiffe::WorkloadApiError::NoIdentityIssued))),
        "{last:?}"
    );

    // Every RPC says the same, with the words of the spec's common practice.
    let mut raw = common::raw_workload_client(&setup.socket()).await;
    let status = raw
        .fetch_jwtsvid(with_header(wl::JwtsvidRequest {
            audience: vec![AUDIENCE.into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no identity issued");
    let status = raw
        .fetch_x509_bundles(with_header(wl::X509BundlesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    setup.shutdown().await;
}

#[tokio::test]
async fn requests_without_the_security_header_are_invalid_arguments() {
    let (setup, _) = Setup::start(None, None).await;
    let mut raw = common::raw_workload_client(&setup.socket()).await;

    // Positive control: with the header, the same calls succeed.
    let mut stream = raw
        .fetch_x509svid(with_header(wl::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.svids.len(), 1);
    assert_eq!(first.svids[0].spiffe_id, workload_id());
    assert!(!first.svids[0].x509_svid_key.is_empty());
    assert!(!first.svids[0].bundle.is_empty());

    let status = raw
        .fetch_x509svid(wl::X509svidRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = raw
        .fetch_jwtsvid(wl::JwtsvidRequest {
            audience: vec![AUDIENCE.into()],
            spiffe_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut wrong = tonic::Request::new(wl::X509BundlesRequest {});
    wrong
        .metadata_mut()
        .insert("workload.spiffe.io", "True".parse().unwrap());
    let status = raw.fetch_x509_bundles(wrong).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Mandatory fields: an audience; the WIT profile is not offered.
    let status = raw
        .fetch_jwtsvid(with_header(wl::JwtsvidRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = raw
        .validate_jwtsvid(with_header(wl::ValidateJwtsvidRequest {
            audience: AUDIENCE.into(),
            svid: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = raw
        .fetch_witsvid(with_header(wl::WitsvidRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    setup.shutdown().await;
}

#[tokio::test]
async fn rotation_and_entry_updates_reach_an_open_stream() {
    // A 20 s X509-SVID is renewed at about 10 s.
    let (setup, workload) = Setup::start(None, Some(20)).await;
    let client = setup.client().await;
    let mut stream = client.stream_x509_svids().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let first_serial = serial(&chain_of(&first)[0]);

    // Not yet at half life: nothing new.
    setup.broker.clock.advance(Duration::from_secs(5));
    let quiet = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
    assert!(quiet.is_err(), "a message before half life: {quiet:?}");

    // Past half life: a new SVID arrives on the open stream.
    setup.broker.clock.advance(Duration::from_secs(6));
    let rotated = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("a rotation on the stream")
        .unwrap()
        .unwrap();
    let rotated_chain = chain_of(&rotated);
    assert_ne!(serial(&rotated_chain[0]), first_serial);
    assert_eq!(rotated.spiffe_id().to_string(), workload_id());
    let (verified, output) = common::openssl_verify(&setup.root_der(), &rotated_chain, "sslclient");
    assert!(verified, "openssl verify: {output}");

    // An operator's change to the entry re-mints at once.
    setup
        .broker
        .update_entry(
            &workload.id,
            pb::EntrySpec {
                audiences: Some(pb::StringList {
                    values: vec![AUDIENCE.into(), "reports".into()],
                }),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    let updated = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("a new SVID after the entry update")
        .unwrap()
        .unwrap();
    assert_ne!(serial(&chain_of(&updated)[0]), serial(&rotated_chain[0]));
    setup.shutdown().await;
}

#[tokio::test]
async fn the_agent_serves_its_cache_through_a_broker_restart() {
    let (mut setup, workload) = Setup::start(None, None).await;
    let client = setup.client().await;
    let before = client.fetch_x509_svid().await.unwrap();
    let jwt = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();

    // The broker goes away: the agent notices, and keeps serving.
    let address = setup.broker.server().grpc_addr();
    setup.broker.stop().await;
    let health = eventually("the agent to notice the broker is gone", || async {
        let health = setup.agent().health();
        health.last_error.is_some().then_some(health)
    })
    .await;
    assert!(health.consecutive_failures >= 1);
    let during = client.fetch_x509_svid().await.unwrap();
    assert_eq!(chain_of(&during), chain_of(&before));
    let cached = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
    assert_eq!(cached.token(), jwt.token());

    // The broker comes back on the same address and data directory: the
    // agent reconnects with its own SVID and syncs again.
    setup.broker.start_again_at(address).await;
    eventually("the agent to sync again", || async {
        setup.agent().health().is_healthy().then_some(())
    })
    .await;
    // And it mints again: an entry update brings a new SVID.
    setup
        .broker
        .update_entry(
            &workload.id,
            pb::EntrySpec {
                purpose: Some("after the restart".into()),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    let after = eventually("a new SVID from the restarted broker", || async {
        let svid = client.fetch_x509_svid().await.ok()?;
        (chain_of(&svid) != chain_of(&before)).then_some(svid)
    })
    .await;
    assert_eq!(after.spiffe_id().to_string(), workload_id());
    setup.shutdown().await;
}

#[tokio::test]
async fn the_agent_restarts_on_its_saved_svid_without_a_token() {
    let (mut setup, _) = Setup::start(None, None).await;
    let first_id = setup.agent().spiffe_id();
    setup.agent.take().unwrap().shutdown().await;
    assert!(!setup.socket().exists(), "shutdown removes the socket");

    // The key file is private.
    let key = setup
        .dir
        .path()
        .join("agent")
        .join(mayfly_sdk::client::KEY_FILE);
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);

    // No token this time: the saved SVID is used (the token was spent anyway).
    let agent = mayfly_agent::start(setup.config(None)).await.unwrap();
    assert_eq!(agent.spiffe_id(), first_id);
    setup.agent = Some(agent);
    let svid = setup.client().await.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), workload_id());

    // Negative control: a fresh data directory and no token cannot start.
    let mut fresh = setup.config(None);
    fresh.data_dir = setup.dir.path().join("fresh-agent");
    fresh.socket_path = setup.dir.path().join("fresh.sock");
    let refused = mayfly_agent::start(fresh).await.err();
    assert!(
        matches!(refused, Some(AgentError::NoIdentity { .. })),
        "{refused:?}"
    );
    // And a spent token is refused by the broker.
    let mut spent = setup.config(Some(&setup.token));
    spent.data_dir = setup.dir.path().join("spent-agent");
    spent.socket_path = setup.dir.path().join("spent.sock");
    let refused = mayfly_agent::start(spent).await.err();
    assert!(
        matches!(refused, Some(AgentError::Broker { .. })),
        "{refused:?}"
    );
    setup.shutdown().await;
}

#[tokio::test]
async fn x509_answers_carry_the_brokers_crl_with_revoked_serials() {
    let (setup, _) = Setup::start(None, None).await;
    let mut raw = common::raw_workload_client(&setup.socket()).await;
    let first = raw
        .fetch_x509svid(with_header(wl::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let leaf = first.svids[0].x509_svid.clone();
    let revoked_serials = |crl: &[Vec<u8>]| -> Vec<String> {
        use x509_parser::prelude::*;
        assert_eq!(crl.len(), 1, "one CRL, from the broker");
        let (_, parsed) = CertificateRevocationList::from_der(&crl[0]).unwrap();
        parsed
            .iter_revoked_certificates()
            .map(|r| r.raw_serial_as_string())
            .collect()
    };
    // Positive control: a CRL, without this SVID's serial.
    let (_, cert) = {
        use x509_parser::prelude::*;
        X509Certificate::from_der(&leaf).unwrap()
    };
    let leaf_serial = cert.raw_serial_as_string();
    assert!(!revoked_serials(&first.crl).contains(&leaf_serial));

    common::revoke_via(
        setup.broker.admin().await,
        "serial",
        &leaf_serial,
        "agent crl test",
    )
    .await
    .unwrap();
    let crl = eventually("the revoked serial in the Workload API's crl", || {
        let socket = setup.socket();
        let serial = leaf_serial.clone();
        async move {
            let mut raw = common::raw_workload_client(&socket).await;
            let answer = raw
                .fetch_x509_bundles(with_header(wl::X509BundlesRequest {}))
                .await
                .ok()?
                .into_inner()
                .next()
                .await?
                .ok()?;
            let listed = revoked_serials(&answer.crl);
            listed.contains(&serial).then_some(answer.crl)
        }
    })
    .await;
    assert_eq!(crl.len(), 1);
    setup.shutdown().await;
}

/// The `jti` of a token, read as the broker sees it.
async fn jti_of(broker: &TestBroker, token: &str) -> String {
    broker.validate(token, AUDIENCE).await.unwrap().jti
}

#[tokio::test]
async fn a_revoked_cached_jwt_svid_is_never_handed_out_again() {
    let (setup, workload) = Setup::start(None, None).await;
    let client = setup.client().await;
    // Positive control: the agent serves its cached token.
    let first = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
    let again = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
    assert_eq!(again.token(), first.token());

    let jti = jti_of(&setup.broker, first.token()).await;
    let revoked_at = std::time::Instant::now();
    common::revoke_via(setup.broker.admin().await, "jti", &jti, "leaked")
        .await
        .unwrap();
    // Once the agent has heard (its own validation refuses the token), its
    // cache must not hand the token out again.
    eventually("the agent to refuse the revoked token", || async {
        client
            .validate_jwt_token(AUDIENCE, first.token())
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let heard = revoked_at.elapsed();
    let next = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
    assert_ne!(next.token(), first.token(), "the revoked token was served");
    assert_ne!(jti_of(&setup.broker, next.token()).await, jti);
    assert!(
        client
            .validate_jwt_token(AUDIENCE, next.token())
            .await
            .is_ok()
    );
    eprintln!("the agent heard of the revocation {heard:?} after it was made");

    // An identity revocation: the agent's cache has a token, the broker
    // refuses to mint, so the caller is refused.
    common::revoke_via(
        setup.broker.admin().await,
        "entry",
        &workload.id,
        "host lost",
    )
    .await
    .unwrap();
    eventually(
        "the agent to refuse the revoked identity's token",
        || async {
            client
                .validate_jwt_token(AUDIENCE, next.token())
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let mut raw = common::raw_workload_client(&setup.socket()).await;
    let refused = raw
        .fetch_jwtsvid(with_header(wl::JwtsvidRequest {
            audience: vec![AUDIENCE.into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    setup.shutdown().await;
}

#[tokio::test]
async fn a_revoked_x509_svid_is_replaced_and_a_revoked_identity_withdrawn() {
    let (setup, workload) = Setup::start(None, None).await;
    let client = setup.client().await;
    let first = client.fetch_x509_svid().await.unwrap();
    let first_serial = serial(&chain_of(&first)[0]);
    let mut stream = client.stream_x509_svids().await.unwrap();
    let opened = stream.next().await.unwrap().unwrap();
    assert_eq!(serial(&chain_of(&opened)[0]), first_serial);

    let revoked_at = std::time::Instant::now();
    common::revoke_via(
        setup.broker.admin().await,
        "serial",
        &first_serial,
        "key leaked",
    )
    .await
    .unwrap();
    // The open stream gets a new SVID without asking.
    let replaced = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("an update on the open stream")
        .unwrap()
        .unwrap();
    let elapsed = revoked_at.elapsed();
    let new_serial = serial(&chain_of(&replaced)[0]);
    assert_ne!(new_serial, first_serial);
    assert_eq!(replaced.spiffe_id().to_string(), workload_id());
    let (verified, output) =
        common::openssl_verify(&setup.root_der(), &chain_of(&replaced), "sslclient");
    assert!(verified, "openssl verify: {output}");
    eprintln!("the open stream had a new X509-SVID {elapsed:?} after the revocation");
    // And a new request gets the new one, never the revoked one.
    let fetched = client.fetch_x509_svid().await.unwrap();
    assert_eq!(serial(&chain_of(&fetched)[0]), new_serial);

    // The identity revoked: withdrawn, the stream ends, new callers refused.
    common::revoke_via(
        setup.broker.admin().await,
        "entry",
        &workload.id,
        "host lost",
    )
    .await
    .unwrap();
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream to end");
    assert!(matches!(ended, Some(Err(_))), "{ended:?}");
    let mut raw = common::raw_workload_client(&setup.socket()).await;
    let refused = match raw
        .fetch_x509svid(with_header(wl::X509svidRequest {}))
        .await
    {
        Err(status) => status,
        Ok(answer) => answer.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("revoked"), "{refused:?}");
    setup.shutdown().await;
}

#[tokio::test]
async fn the_agent_refuses_tokens_living_too_long_or_naming_no_workload() {
    let (setup, _) = Setup::start(None, None).await;
    let client = setup.client().await;
    let now = mayfly::clock::Clock::unix_now(setup.broker.clock.as_ref());
    let data_dir = setup.broker.data_dir();
    let sign = |subject: &str, expires_at: i64| {
        common::sign_with_broker_key(&data_dir, subject, AUDIENCE, now, expires_at, None)
    };
    // Positive control: a token as the broker mints them.
    let fine = sign(&workload_id(), now + 300);
    let validated = client.validate_jwt_token(AUDIENCE, &fine).await.unwrap();
    assert_eq!(validated.spiffe_id().to_string(), workload_id());

    let mut raw = common::raw_workload_client(&setup.socket()).await;
    for (token, why) in [
        (sign(&workload_id(), i64::MAX), "at most 3600s"),
        (sign(&workload_id(), now + 3600 + 31), "at most 3600s"),
        (
            sign(&format!("spiffe://{TRUST_DOMAIN}"), now + 300),
            "not a workload",
        ),
    ] {
        let refused = raw
            .validate_jwtsvid(with_header(wl::ValidateJwtsvidRequest {
                audience: AUDIENCE.into(),
                svid: token,
            }))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains(why), "{refused:?}");
    }
    setup.shutdown().await;
}

#[tokio::test]
async fn a_disabled_entrys_cached_jwt_svid_is_not_handed_out_after_the_agents_next_sync() {
    let (setup, workload) = Setup::start(None, None).await;
    let client = setup.client().await;
    // Positive control: the agent serves its cached token.
    let first = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
    let again = client.fetch_jwt_svid(&[AUDIENCE], None).await.unwrap();
    assert_eq!(again.token(), first.token());

    setup
        .broker
        .admin()
        .await
        .disable_entry(pb::DisableEntryRequest {
            id: workload.id.clone(),
            reason: "owner left".into(),
        })
        .await
        .unwrap();
    // The disable bumps the entry's revision; at its next sync the agent
    // drops the tokens of the old revision and asks the broker, which
    // refuses, naming the reason.
    let raw = common::raw_workload_client(&setup.socket()).await;
    let refused = eventually("the agent to stop serving the disabled entry", || {
        let mut raw = raw.clone();
        async move {
            raw.fetch_jwtsvid(with_header(wl::JwtsvidRequest {
                audience: vec![AUDIENCE.into()],
                spiffe_id: String::new(),
            }))
            .await
            .err()
        }
    })
    .await;
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("owner left"), "{refused:?}");

    setup
        .broker
        .admin()
        .await
        .enable_entry(pb::EnableEntryRequest {
            id: workload.id.clone(),
            reason: "owner back".into(),
        })
        .await
        .unwrap();
    let next = eventually("the agent to serve the enabled entry again", || {
        let mut raw = raw.clone();
        async move {
            raw.fetch_jwtsvid(with_header(wl::JwtsvidRequest {
                audience: vec![AUDIENCE.into()],
                spiffe_id: String::new(),
            }))
            .await
            .ok()
        }
    })
    .await;
    assert!(!next.into_inner().svids.is_empty());
    setup.shutdown().await;
}
