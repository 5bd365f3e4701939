//! The claims of the broker's JWT-SVIDs, end to end.
//!
//! - `iss`: every minting path (MintJwtSvid, a reused token, BatchMintJwtSvids,
//!   MintJwtSvidWithEvidence) puts the OIDC discovery document's `issuer` into
//!   `iss`, checked by jwt-simple's own issuer check next to a wrong issuer it
//!   must refuse; tokens without `iss` still validate.
//! - `ValidateJwtSvid` refuses tokens signed with the broker's own key that
//!   live longer than its configured JWT cap, or whose subject is the trust
//!   domain alone, each next to a positive control.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use common::{TRUST_DOMAIN, TestBroker};
use mayfly::clock::Clock as _;
use mayfly_sdk::proto::v1 as pb;
use tonic::Code;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const OIDC_ISSUER: &str = "https://ci.example.org";

/// The `issuer` of the broker's OIDC discovery document.
async fn discovery_issuer(broker: &TestBroker) -> String {
    let (status, body) = broker.http_get("/.well-known/openid-configuration").await;
    assert_eq!(status, 200, "{body}");
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    document["issuer"].as_str().unwrap().to_owned()
}

fn claims_of(token: &str) -> serde_json::Value {
    let claims = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(claims).unwrap()).unwrap()
}

/// `token` names `issuer` for jwt-simple, which refuses it for another issuer.
fn assert_issued_by(jwks: &str, token: &str, audience: &str, issuer: &str, subject: &str) {
    assert_eq!(claims_of(token)["iss"], issuer);
    assert_eq!(
        common::jwt_simple_verify_with_issuer(jwks, token, audience, Some(issuer)).as_deref(),
        Ok(subject)
    );
    // Negative controls: jwt-simple really checks the issuer.
    for wrong in ["https://evil.example", &format!("{issuer}/")] {
        let refused = common::jwt_simple_verify_with_issuer(jwks, token, audience, Some(wrong));
        assert!(refused.is_err(), "{wrong}: {refused:?}");
    }
}

/// An ES256 OIDC issuer (a CI system) whose tokens the broker accepts as evidence.
struct CiIssuer {
    key: aws_lc_rs::signature::EcdsaKeyPair,
}

impl CiIssuer {
    fn new() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        CiIssuer {
            key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .unwrap(),
        }
    }

    /// The `[attestors]` config that trusts this issuer under alias `ci`.
    fn attestors_toml(&self) -> String {
        use aws_lc_rs::signature::KeyPair;
        let point = self.key.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "ci-1",
            "use": "sig", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}]});
        format!(
            "[[oidc]]\nalias = \"ci\"\nissuer = \"{OIDC_ISSUER}\"\naudience = \"mayfly\"\n\
             claims = [\"sub\"]\njwks = {}\n",
            serde_json::Value::String(jwks.to_string())
        )
    }

    fn id_token(&self, subject: &str) -> String {
        let now = mayfly::clock::unix_seconds(std::time::SystemTime::now());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let header = serde_json::json!({"alg": "ES256", "kid": "ci-1", "typ": "JWT"});
        let claims = serde_json::json!({"iss": OIDC_ISSUER, "aud": "mayfly", "sub": subject,
            "jti": format!("ci-{nanos}"), "exp": now + 300, "iat": now - 5});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", B64.encode(signature.as_ref()))
    }
}

#[tokio::test]
async fn every_minting_path_puts_the_discovery_issuer_in_iss() {
    let ci = CiIssuer::new();
    let broker = TestBroker::start_with_attestors(&ci.attestors_toml()).await;
    let issuer = discovery_issuer(&broker).await;
    // No public_url configured: the HTTP listener's own address.
    assert_eq!(issuer, format!("http://{}", broker.server().http_addr()));
    let (_, jwks) = broker.http_get("/keys").await;

    // MintJwtSvid, then the same request again: the cached token.
    let (_, svid) = broker.enrolled("/api", &["db"]).await;
    let minted = broker.mint(&svid, "db", 0).await.unwrap();
    assert_issued_by(&jwks, &minted.token, "db", &issuer, &svid.spiffe_id);
    let reused = broker.mint(&svid, "db", 0).await.unwrap();
    assert_eq!(reused.token, minted.token, "the cached token");
    assert_issued_by(&jwks, &reused.token, "db", &issuer, &svid.spiffe_id);
    // A shorter TTL is a fresh signature.
    let short = broker.mint(&svid, "db", 60).await.unwrap();
    assert_ne!(short.jti, minted.jti);
    assert_issued_by(&jwks, &short.token, "db", &issuer, &svid.spiffe_id);

    // BatchMintJwtSvids, as an agent asks for a workload registered under it.
    let (_, agent) = broker.enrolled("/agent/node-1", &["unused"]).await;
    let mut spec = TestBroker::entry_spec("/web", &["orders"], &["unix:uid:1000"]);
    spec.parent_id = Some(agent.spiffe_id.clone());
    let child = broker.create_entry_from(spec).await.unwrap();
    let batch = broker
        .broker_as(&agent)
        .await
        .batch_mint_jwt_svids(pb::BatchMintJwtSvidsRequest {
            params: vec![pb::JwtSvidParams {
                entry_id: child.id.clone(),
                audience: "orders".into(),
                ttl_seconds: 0,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let result = batch.results.into_iter().next().unwrap();
    let batched = result.svid.unwrap_or_else(|| panic!("{:?}", result.error));
    let web = format!("spiffe://{TRUST_DOMAIN}/web");
    assert_issued_by(&jwks, &batched.token, "orders", &issuer, &web);

    // MintJwtSvidWithEvidence: a CI job's ID token, no SVID.
    broker
        .create_entry_with_selectors("/ci/deployer", &["deploy"], &["oidc:ci:sub:acme-app"])
        .await
        .unwrap();
    let mut client = mayfly_sdk::client::connect_broker(&broker.url(), &broker.bundle_pem(), None)
        .await
        .unwrap();
    let with_evidence = mayfly_sdk::client::mint_jwt_svid_with_oidc_token(
        &mut client,
        &ci.id_token("acme-app"),
        "deploy",
        None,
    )
    .await
    .unwrap();
    let deployer = format!("spiffe://{TRUST_DOMAIN}/ci/deployer");
    assert_eq!(with_evidence.spiffe_id, deployer);
    assert_issued_by(&jwks, &with_evidence.token, "deploy", &issuer, &deployer);

    // The broker's own validation accepts them all.
    for (token, audience) in [
        (&minted.token, "db"),
        (&batched.token, "orders"),
        (&with_evidence.token, "deploy"),
    ] {
        broker.validate(token, audience).await.unwrap();
    }
}

#[tokio::test]
async fn the_issuer_is_the_configured_public_url() {
    const PUBLIC_URL: &str = "https://mayfly.example.org";
    let broker =
        TestBroker::start_configured(|config| config.public_url = Some(PUBLIC_URL.into())).await;
    assert_eq!(discovery_issuer(&broker).await, PUBLIC_URL);
    let (_, jwks) = broker.http_get("/keys").await;
    let (_, svid) = broker.enrolled("/api", &["db"]).await;
    let minted = broker.mint(&svid, "db", 0).await.unwrap();
    assert_issued_by(&jwks, &minted.token, "db", PUBLIC_URL, &svid.spiffe_id);
    // Not the listener's address, which another replica would not share.
    let listener = format!("http://{}", broker.server().http_addr());
    assert!(
        common::jwt_simple_verify_with_issuer(&jwks, &minted.token, "db", Some(&listener)).is_err()
    );
}

/// Signs a token for `subject` and audience `db` with the broker's own key.
fn sign(
    broker: &TestBroker,
    subject: &str,
    issued_at: i64,
    expires_at: i64,
    issuer: Option<&str>,
) -> String {
    common::sign_with_broker_key(
        &broker.data_dir(),
        subject,
        "db",
        issued_at,
        expires_at,
        issuer,
    )
}

fn assert_rejected(result: Result<pb::ValidateJwtSvidResponse, tonic::Status>, why: &str) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains(why), "{status:?}");
}

#[tokio::test]
async fn tokens_without_iss_still_validate() {
    let broker = TestBroker::start().await;
    let now = broker.clock.unix_now();
    let subject = format!("spiffe://{TRUST_DOMAIN}/api");
    let without = sign(&broker, &subject, now, now + 300, None);
    assert!(claims_of(&without).get("iss").is_none());
    assert_eq!(
        broker.validate(&without, "db").await.unwrap().spiffe_id,
        subject
    );
    // Nor does the broker judge `iss`: it is not how it tells its tokens apart.
    let other = sign(
        &broker,
        &subject,
        now,
        now + 300,
        Some("https://other.example"),
    );
    broker.validate(&other, "db").await.unwrap();
}

#[tokio::test]
async fn validate_refuses_a_token_living_longer_than_the_default_cap() {
    let broker = TestBroker::start().await;
    let now = broker.clock.unix_now();
    let subject = format!("spiffe://{TRUST_DOMAIN}/api");
    let hour = 3600;
    // Positive controls: what the broker mints, and the 1 h cap plus the 30 s leeway.
    broker
        .validate(&sign(&broker, &subject, now, now + 300, None), "db")
        .await
        .unwrap();
    broker
        .validate(&sign(&broker, &subject, now, now + hour + 30, None), "db")
        .await
        .unwrap();
    for expires_at in [now + hour + 31, i64::MAX] {
        assert_rejected(
            broker
                .validate(&sign(&broker, &subject, now, expires_at, None), "db")
                .await,
            "at most 3600s (plus 30s leeway)",
        );
    }
    // Counted from `iat` too: 10 minutes left, but minted for two hours.
    assert_rejected(
        broker
            .validate(
                &sign(&broker, &subject, now + 600 - 2 * hour, now + 600, None),
                "db",
            )
            .await,
        "after its iat",
    );
}

#[tokio::test]
async fn validate_uses_the_configured_jwt_cap() {
    let broker = TestBroker::start_configured(|config| {
        config.ttl.jwt_max = Duration::from_secs(600);
        config.ttl.jwt_default = Duration::from_secs(300);
    })
    .await;
    let now = mayfly::clock::unix_seconds(std::time::SystemTime::now());
    let subject = format!("spiffe://{TRUST_DOMAIN}/api");
    broker
        .validate(&sign(&broker, &subject, now, now + 600, None), "db")
        .await
        .unwrap();
    // 20 minutes: under the SDK's default hour, over this broker's 10 minutes.
    assert_rejected(
        broker
            .validate(&sign(&broker, &subject, now, now + 1200, None), "db")
            .await,
        "at most 600s",
    );
}

#[tokio::test]
async fn validate_refuses_a_subject_that_is_only_the_trust_domain() {
    let broker = TestBroker::start().await;
    let now = broker.clock.unix_now();
    let workload = format!("spiffe://{TRUST_DOMAIN}/api");
    broker
        .validate(&sign(&broker, &workload, now, now + 300, None), "db")
        .await
        .unwrap();
    let trust_domain = format!("spiffe://{TRUST_DOMAIN}");
    assert_rejected(
        broker
            .validate(&sign(&broker, &trust_domain, now, now + 300, None), "db")
            .await,
        "not a workload",
    );
}
