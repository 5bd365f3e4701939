//! Attestation end to end: Kubernetes PSATs, OIDC ID tokens and x509pop
//! device certificates against a real broker. Keys, tokens and
//! certificates are made here; nothing touches the network.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{TRUST_DOMAIN, TestBroker};
use mayfly_sdk::proto::v1 as pb;
use tonic::Code;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An RS256 issuer key (what Kubernetes uses), signing with rcgen's RSA key.
struct RsaIssuer {
    key: rcgen::KeyPair,
    kid: String,
}

impl RsaIssuer {
    fn new(kid: &str) -> Self {
        RsaIssuer {
            key: rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
            kid: kid.into(),
        }
    }

    fn jwk(&self) -> serde_json::Value {
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
        serde_json::json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
            "n": B64.encode(trim(rsa.modulus)), "e": B64.encode(trim(rsa.exponent))})
    }

    fn sign(&self, header: serde_json::Value, claims: &serde_json::Value) -> String {
        use rcgen::SigningKey;
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self.key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(signature))
    }

    fn token(&self, claims: &serde_json::Value) -> String {
        self.sign(
            serde_json::json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

fn jwks(keys: &[serde_json::Value]) -> String {
    serde_json::json!({ "keys": keys }).to_string()
}

fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.into()).to_string()
}

const K8S_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn psat_claims(ns: &str, sa: &str) -> serde_json::Value {
    serde_json::json!({
        "iss": K8S_ISSUER, "aud": ["mayfly"], "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "exp": now() + 600, "iat": now() - 5, "nbf": now() - 5,
        "kubernetes.io": {
            "namespace": ns,
            "serviceaccount": {"name": sa, "uid": "11111111-2222-3333-4444-555555555555"},
            "pod": {"name": "api-7d9f", "uid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"},
            "node": {"name": "node-1", "uid": "ffffffff-0000-1111-2222-333333333333"}
        }
    })
}

async fn attest_psat(broker: &TestBroker, token: &str) -> Result<common::Svid, tonic::Status> {
    let (key, csr) = mayfly_sdk::client::new_key_and_csr().unwrap();
    let response = broker
        .broker()
        .await
        .attest_and_issue(pb::AttestAndIssueRequest {
            evidence: Some(pb::attest_and_issue_request::Evidence::K8sPsat(
                pb::K8sPsatEvidence {
                    token: token.into(),
                },
            )),
            csr,
            spiffe_id: String::new(),
        })
        .await?
        .into_inner();
    Ok(common::svid_from(response, &key))
}

fn assert_refused_and_audited<T: std::fmt::Debug>(
    broker: &TestBroker,
    result: Result<T, tonic::Status>,
    code: Code,
    needle: &str,
) {
    let status = result.expect_err("expected a refusal");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status
            .message()
            .to_lowercase()
            .contains(&needle.to_lowercase()),
        "{:?} lacks {needle:?}",
        status.message()
    );
    let record = common::last_audit_record(&broker.data_dir());
    assert_eq!(record["outcome"], "refused", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains(&needle.to_lowercase()),
        "{record}"
    );
    assert!(
        record["evidence_sha256"].is_string(),
        "evidence recorded by hash: {record}"
    );
}

#[tokio::test]
async fn kubernetes_psat_attestation() {
    let issuer = RsaIssuer::new("k8s-1");
    let config = format!(
        "[[k8s_psat]]\ncluster = \"prod\"\nissuer = \"{K8S_ISSUER}\"\naudience = \"mayfly\"\nmax_token_age = \"1h\"\njwks = {}\n",
        toml_string(&jwks(&[issuer.jwk()]))
    );
    let broker = TestBroker::start_with_attestors(&config).await;
    broker
        .create_entry_with_selectors(
            "/billing/api",
            &["payments"],
            &["k8s:cluster:prod", "k8s:ns:billing", "k8s:sa:api"],
        )
        .await
        .unwrap();

    // Positive control: the SVID, independently verified.
    let svid = attest_psat(&broker, &issuer.token(&psat_claims("billing", "api")))
        .await
        .unwrap();
    assert_eq!(
        svid.spiffe_id,
        format!("spiffe://{TRUST_DOMAIN}/billing/api")
    );
    let (ok, output) = common::openssl_verify(
        &svid.bundle.x509_authorities[0],
        &svid.chain_der,
        "sslclient",
    );
    assert!(ok, "{output}");
    let record = common::last_audit_record(&broker.data_dir());
    assert_eq!(record["outcome"], "granted");
    assert_eq!(record["detail"]["attestor"], "k8s_psat");
    let selectors: Vec<String> =
        serde_json::from_value(record["detail"]["selectors"].clone()).unwrap();
    for expected in [
        "k8s:cluster:prod",
        "k8s:ns:billing",
        "k8s:sa:api",
        "k8s:pod-name:api-7d9f",
        "k8s:node-name:node-1",
    ] {
        assert!(
            selectors.contains(&expected.to_owned()),
            "{selectors:?} lacks {expected}"
        );
    }

    // Replay of an accepted token (a different one: RS256 is deterministic,
    // and the positive control above already used its token).
    let mut claims = psat_claims("billing", "api");
    claims["iat"] = (now() - 7).into();
    let token = issuer.token(&claims);
    assert!(attest_psat(&broker, &token).await.is_ok());
    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &token).await,
        Code::Unauthenticated,
        "already used",
    );

    let mut claims = psat_claims("billing", "api");
    claims["exp"] = (now() - 120).into();
    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &issuer.token(&claims)).await,
        Code::Unauthenticated,
        "expired",
    );

    let mut claims = psat_claims("billing", "api");
    claims["nbf"] = (now() + 600).into();
    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &issuer.token(&claims)).await,
        Code::Unauthenticated,
        "not valid before",
    );

    let mut claims = psat_claims("billing", "api");
    claims["aud"] = serde_json::json!(["vault"]);
    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &issuer.token(&claims)).await,
        Code::Unauthenticated,
        "audience",
    );

    let mut claims = psat_claims("billing", "api");
    claims["iss"] = "https://evil.example".into();
    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &issuer.token(&claims)).await,
        Code::Unauthenticated,
        "issuer",
    );

    let stranger = RsaIssuer::new("k8s-2");
    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &stranger.token(&psat_claims("billing", "api"))).await,
        Code::Unauthenticated,
        "k8s-2",
    );

    let impostor = RsaIssuer::new("k8s-1");
    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &impostor.token(&psat_claims("billing", "api"))).await,
        Code::Unauthenticated,
        "signature",
    );

    let claims = psat_claims("billing", "api");
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","kid":"k8s-1"}"#),
        B64.encode(claims.to_string())
    );
    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &none).await,
        Code::Unauthenticated,
        "algorithm",
    );

    // HS256, HMAC-keyed with the issuer's public key (algorithm confusion).
    let header = serde_json::json!({"alg": "HS256", "kid": "k8s-1", "typ": "JWT"});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let hmac_key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        issuer.key.public_key_pem().as_bytes(),
    );
    let tag = aws_lc_rs::hmac::sign(&hmac_key, input.as_bytes());
    let hs256 = format!("{input}.{}", B64.encode(tag.as_ref()));
    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &hs256).await,
        Code::Unauthenticated,
        "algorithm",
    );

    let mut claims = psat_claims("billing", "api");
    claims.as_object_mut().unwrap().remove("kubernetes.io");
    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &issuer.token(&claims)).await,
        Code::Unauthenticated,
        "claim",
    );

    assert_refused_and_audited(
        &broker,
        attest_psat(&broker, &issuer.token(&psat_claims("marketing", "api"))).await,
        Code::PermissionDenied,
        "no entry matches",
    );
}

const OIDC_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// An ES256 OIDC issuer key.
struct EcIssuer {
    key: aws_lc_rs::signature::EcdsaKeyPair,
    kid: String,
}

impl EcIssuer {
    fn new(kid: &str) -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        EcIssuer {
            key,
            kid: kid.into(),
        }
    }

    fn jwk(&self) -> serde_json::Value {
        use aws_lc_rs::signature::KeyPair;
        let point = self.key.public_key().as_ref();
        serde_json::json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])})
    }

    fn token(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
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

fn github_claims(repository: &str, git_ref: &str) -> serde_json::Value {
    serde_json::json!({
        "iss": OIDC_ISSUER, "aud": "mayfly", "sub": format!("repo:{repository}:ref:{git_ref}"),
        "repository": repository, "ref": git_ref, "workflow_ref": format!("{repository}/.github/workflows/deploy.yml@{git_ref}"),
        "jti": format!("jti-{}", now_nanos()), "exp": now() + 300, "iat": now() - 5, "nbf": now() - 5,
    })
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn oidc_ci_token_mints_a_jwt_in_one_call() {
    let issuer = EcIssuer::new("gh-1");
    let config = format!(
        "[[oidc]]\nalias = \"github\"\nissuer = \"{OIDC_ISSUER}\"\naudience = \"mayfly\"\nclaims = [\"sub\", \"repository\", \"ref\", \"workflow_ref\"]\njwks = {}\n",
        toml_string(&jwks(&[issuer.jwk()]))
    );
    let broker = TestBroker::start_with_attestors(&config).await;

    // Over-broad trust is refused at creation: a branch alone names no repository.
    let broad = broker
        .create_entry_with_selectors(
            "/ci/any-main",
            &["deploy"],
            &["oidc:github:ref:refs/heads/main"],
        )
        .await;
    assert_eq!(broad.unwrap_err().code(), Code::InvalidArgument);
    broker
        .create_entry_with_selectors(
            "/ci/deployer",
            &["deploy"],
            &[
                "oidc:github:repository:acme/app",
                "oidc:github:ref:refs/heads/main",
            ],
        )
        .await
        .unwrap();

    // The SDK's direct path to the broker (no agent), as a CI job uses it.
    let mut client = mayfly_sdk::client::connect_broker(&broker.url(), &broker.bundle_pem(), None)
        .await
        .unwrap();
    let token = issuer.token(&github_claims("acme/app", "refs/heads/main"));
    // The SDK's one-call path.
    let minted =
        mayfly_sdk::client::mint_jwt_svid_with_oidc_token(&mut client, &token, "deploy", None)
            .await
            .unwrap();
    assert_eq!(
        minted.spiffe_id,
        format!("spiffe://{TRUST_DOMAIN}/ci/deployer")
    );
    let (_, served_jwks) = broker.http_get("/keys").await;
    assert_eq!(
        common::jwt_simple_verify(&served_jwks, &minted.token, "deploy").unwrap(),
        minted.spiffe_id
    );
    let record = common::last_audit_record(&broker.data_dir());
    assert_eq!(record["outcome"], "granted");
    assert_eq!(record["action"], "jwt.mint");
    assert_eq!(
        record["evidence_sha256"],
        mayfly::attest::sha256_hex(token.as_bytes())
    );

    let mint = |token: String| {
        let mut client = client.clone();
        async move {
            mayfly_sdk::client::mint_jwt_svid_with_oidc_token(&mut client, &token, "deploy", None)
                .await
        }
    };
    assert_refused_and_audited(
        &broker,
        mint(token.clone()).await,
        Code::Unauthenticated,
        "already used",
    );
    // Another branch of the same repository matches no entry.
    assert_refused_and_audited(
        &broker,
        mint(issuer.token(&github_claims("acme/app", "refs/heads/dev"))).await,
        Code::PermissionDenied,
        "no entry matches",
    );
    let mut claims = github_claims("acme/app", "refs/heads/main");
    claims["exp"] = (now() - 120).into();
    assert_refused_and_audited(
        &broker,
        mint(issuer.token(&claims)).await,
        Code::Unauthenticated,
        "expired",
    );
    let mut claims = github_claims("acme/app", "refs/heads/main");
    claims["aud"] = "sts.amazonaws.com".into();
    assert_refused_and_audited(
        &broker,
        mint(issuer.token(&claims)).await,
        Code::Unauthenticated,
        "audience",
    );
    let mut claims = github_claims("acme/app", "refs/heads/main");
    claims.as_object_mut().unwrap().remove("sub");
    assert_refused_and_audited(
        &broker,
        mint(issuer.token(&claims)).await,
        Code::Unauthenticated,
        "sub",
    );
    let mut claims = github_claims("acme/app", "refs/heads/main");
    claims["nbf"] = (now() + 600).into();
    assert_refused_and_audited(
        &broker,
        mint(issuer.token(&claims)).await,
        Code::Unauthenticated,
        "not valid before",
    );
    let mut claims = github_claims("acme/app", "refs/heads/main");
    claims["iss"] = "https://gitlab.example.com".into();
    assert_refused_and_audited(
        &broker,
        mint(issuer.token(&claims)).await,
        Code::Unauthenticated,
        "issuer",
    );
    let stranger = EcIssuer::new("gh-unknown");
    assert_refused_and_audited(
        &broker,
        mint(stranger.token(&github_claims("acme/app", "refs/heads/main"))).await,
        Code::Unauthenticated,
        "gh-unknown",
    );
    let claims = github_claims("acme/app", "refs/heads/main");
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","kid":"gh-1"}"#),
        B64.encode(claims.to_string())
    );
    assert_refused_and_audited(
        &broker,
        mint(none).await,
        Code::Unauthenticated,
        "algorithm",
    );
    let header = serde_json::json!({"alg": "HS256", "kid": "gh-1", "typ": "JWT"});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let hmac_key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        issuer.jwk().to_string().as_bytes(),
    );
    let tag = aws_lc_rs::hmac::sign(&hmac_key, input.as_bytes());
    assert_refused_and_audited(
        &broker,
        mint(format!("{input}.{}", B64.encode(tag.as_ref()))).await,
        Code::Unauthenticated,
        "algorithm",
    );
    let impostor = EcIssuer::new("gh-1");
    assert_refused_and_audited(
        &broker,
        mint(impostor.token(&github_claims("acme/app", "refs/heads/main"))).await,
        Code::Unauthenticated,
        "signature",
    );
    // A disallowed audience for a matching entry.
    let result = mayfly_sdk::client::mint_jwt_svid_with_oidc_token(
        &mut client,
        &issuer.token(&github_claims("acme/app", "refs/heads/main")),
        "prod-db",
        None,
    )
    .await;
    assert_refused_and_audited(&broker, result, Code::PermissionDenied, "not allowed");
}

#[tokio::test]
async fn x509pop_device_attestation() {
    // A device CA and a device certificate, made here.
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Device CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let device =
        |cn: &str, not_after: time::OffsetDateTime, issuer: &rcgen::Issuer<'_, &rcgen::KeyPair>| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params =
                rcgen::CertificateParams::new(vec![format!("{cn}.devices.example.org")]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(2);
            params.not_after = not_after;
            let cert = params.signed_by(&key, issuer).unwrap();
            (cert.der().to_vec(), key)
        };
    let next_year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let (device_der, device_key) = device("dev-42", next_year, &ca_issuer);

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("device-ca.pem");
    std::fs::write(&bundle, ca_cert.pem()).unwrap();
    let config = format!(
        "[x509pop]\nca_bundle = {}\n",
        toml_string(bundle.to_str().unwrap())
    );
    let broker = TestBroker::start_with_attestors(&config).await;
    broker
        .create_entry_with_selectors(
            "/devices/dev-42",
            &["telemetry"],
            &["x509pop:subject:cn:dev-42"],
        )
        .await
        .unwrap();

    let attest = |chain: Vec<Vec<u8>>,
                  key_pem: String,
                  tamper: Option<&'static [u8]>,
                  reuse: Option<pb::X509PopChallenge>| {
        let broker = &broker;
        async move {
            let mut client = broker.broker().await;
            let challenge = match reuse {
                Some(challenge) => challenge,
                None => client
                    .create_x509_pop_challenge(pb::CreateX509PopChallengeRequest {})
                    .await?
                    .into_inner(),
            };
            let nonce = tamper
                .map(<[u8]>::to_vec)
                .unwrap_or(challenge.nonce.clone());
            let signature =
                mayfly::attest::x509pop::sign_challenge(key_pem.as_bytes(), &nonce).unwrap();
            let (key, csr) = mayfly_sdk::client::new_key_and_csr().unwrap();
            let response = client
                .attest_and_issue(pb::AttestAndIssueRequest {
                    evidence: Some(pb::attest_and_issue_request::Evidence::X509pop(
                        pb::X509PopEvidence {
                            challenge_id: challenge.challenge_id.clone(),
                            cert_chain: chain,
                            signature,
                        },
                    )),
                    csr,
                    spiffe_id: String::new(),
                })
                .await?
                .into_inner();
            Ok::<_, tonic::Status>((common::svid_from(response, &key), challenge))
        }
    };

    // Positive control.
    let (svid, used) = attest(
        vec![device_der.clone()],
        device_key.serialize_pem(),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        svid.spiffe_id,
        format!("spiffe://{TRUST_DOMAIN}/devices/dev-42")
    );
    let record = common::last_audit_record(&broker.data_dir());
    let selectors: Vec<String> =
        serde_json::from_value(record["detail"]["selectors"].clone()).unwrap();
    assert!(
        selectors.contains(&"x509pop:san:dns:dev-42.devices.example.org".to_owned()),
        "{selectors:?}"
    );
    assert!(
        selectors.iter().any(|s| s.starts_with("x509pop:ca:"))
            && selectors.iter().any(|s| s.starts_with("x509pop:serial:"))
    );

    // Reuse of a nonce.
    let reuse = attest(
        vec![device_der.clone()],
        device_key.serialize_pem(),
        None,
        Some(used),
    )
    .await;
    assert_refused_and_audited(&broker, reuse, Code::Unauthenticated, "challenge");
    // Signature over a different nonce.
    let other = attest(
        vec![device_der.clone()],
        device_key.serialize_pem(),
        Some(b"another nonce"),
        None,
    )
    .await;
    assert_refused_and_audited(&broker, other, Code::Unauthenticated, "signature");
    // A chain to an untrusted CA.
    let rogue_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut rogue_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    rogue_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let rogue = rcgen::Issuer::new(rogue_params, &rogue_key);
    let (rogue_der, rogue_device_key) = device("dev-42", next_year, &rogue);
    let untrusted = attest(
        vec![rogue_der],
        rogue_device_key.serialize_pem(),
        None,
        None,
    )
    .await;
    assert_refused_and_audited(&broker, untrusted, Code::Unauthenticated, "not trusted");
    // An expired device certificate.
    let (expired_der, expired_key) = device(
        "dev-42",
        time::OffsetDateTime::now_utc() - time::Duration::days(1),
        &ca_issuer,
    );
    let expired = attest(vec![expired_der], expired_key.serialize_pem(), None, None).await;
    assert_refused_and_audited(&broker, expired, Code::Unauthenticated, "expired");
    // Positive control again: the device still attests with a fresh challenge.
    assert!(
        attest(vec![device_der], device_key.serialize_pem(), None, None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn unconfigured_attestors_are_refused_clearly() {
    let broker = TestBroker::start().await;
    let result = attest_psat(&broker, "a.b.c").await;
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("not configured"), "{status:?}");
    // An oidc selector needs an oidc issuer configured.
    let refused = broker
        .create_entry_with_selectors("/ci/x", &["a"], &["oidc:github:repository:acme/app"])
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::InvalidArgument);
    // Positive control: a plain entry is fine.
    assert!(
        broker
            .create_entry_with_selectors("/ci/y", &["a"], &["k8s:ns:x"])
            .await
            .is_ok()
    );
    let _ = Duration::from_secs(0);
}

#[tokio::test]
async fn an_agent_attests_its_node_with_a_kubernetes_token_file() {
    let issuer = RsaIssuer::new("k8s-1");
    let config = format!(
        "[[k8s_psat]]\ncluster = \"prod\"\nissuer = \"{K8S_ISSUER}\"\naudience = \"mayfly\"\njwks = {}\n",
        toml_string(&jwks(&[issuer.jwk()]))
    );
    let broker = TestBroker::start_with_attestors(&config).await;
    broker
        .create_entry_with_selectors(
            "/agent/node-1",
            &["unused"],
            &["k8s:cluster:prod", "k8s:ns:mayfly", "k8s:sa:agent"],
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("psat");
    std::fs::write(&token_file, issuer.token(&psat_claims("mayfly", "agent"))).unwrap();
    let agent_config = |data: &str| {
        let mut config = mayfly_agent::AgentConfig::new(
            broker.url(),
            broker.bundle_pem(),
            dir.path().join(format!("{data}.sock")),
        );
        config.data_dir = dir.path().join(data);
        config.clock = broker.clock.clone();
        config.node_evidence = Some(mayfly_agent::NodeEvidence::K8sPsatTokenFile(
            token_file.clone(),
        ));
        config
    };
    let agent = mayfly_agent::start(agent_config("a")).await.unwrap();
    assert_eq!(
        agent.spiffe_id().to_string(),
        format!("spiffe://{TRUST_DOMAIN}/agent/node-1")
    );
    agent.shutdown().await;
    let record = common::read_audit(&broker.data_dir());
    assert!(record.contains("k8s_psat"));

    // The same token again (a fresh agent dir, so it must attest): a replay.
    let replay = mayfly_agent::start(agent_config("b")).await;
    assert!(replay.is_err(), "a projected token is accepted once");
    // The kubelet rotates the token file; the agent attests with the new one.
    let mut claims = psat_claims("mayfly", "agent");
    claims["iat"] = (now() - 9).into();
    std::fs::write(&token_file, issuer.token(&claims)).unwrap();
    let again = mayfly_agent::start(agent_config("c")).await.unwrap();
    assert_eq!(
        again.spiffe_id().to_string(),
        format!("spiffe://{TRUST_DOMAIN}/agent/node-1")
    );
    again.shutdown().await;
}
