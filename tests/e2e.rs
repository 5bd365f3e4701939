//! End to end against a real broker: entry -> join token -> attest ->
//! renew -> mint -> validate, every refusal with its own status next to a
//! positive control, and every credential checked by an independent verifier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use base64::Engine;
use common::{TRUST_DOMAIN, TestBroker};
use mayfly_sdk::proto::v1 as pb;
use tonic::Code;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("expected a refusal");
    assert_eq!(status.code(), code, "status: {status:?}");
    assert!(
        status
            .message()
            .to_lowercase()
            .contains(&needle.to_lowercase()),
        "message {:?} should mention {needle:?}",
        status.message()
    );
}

#[tokio::test]
async fn full_flow_with_independent_verification() {
    let broker = TestBroker::start().await;
    let (entry, svid) = broker
        .enrolled("/billing/api", &["payments", "ledger"])
        .await;
    assert_eq!(
        svid.spiffe_id,
        format!("spiffe://{TRUST_DOMAIN}/billing/api")
    );
    assert_eq!(svid.chain_der.len(), 2, "leaf and intermediate");
    let root = &svid.bundle.x509_authorities[0];

    // The issued leaf: SPIFFE profile, openssl, rustls-webpki.
    common::assert_x509_svid_profile(&svid.chain_der[0], &svid.spiffe_id);
    for purpose in ["sslclient", "sslserver"] {
        let (ok, output) = common::openssl_verify(root, &svid.chain_der, purpose);
        assert!(ok, "openssl verify ({purpose}): {output}");
    }
    common::webpki_verify(root, &svid.chain_der, SystemTime::now()).unwrap();
    // Negative control: the same leaf against the intermediate alone as root fails
    // for openssl (wrong anchor), so the verifier is really checking.
    let (ok, _) = common::openssl_verify(&svid.chain_der[0], &svid.chain_der[1..], "sslclient");
    assert!(!ok, "a leaf must not verify as its own trust anchor");

    // Renew over mTLS: same identity, new serial, also verified.
    let renewed = broker.renew(&svid).await.unwrap();
    assert_eq!(renewed.spiffe_id, svid.spiffe_id);
    assert_ne!(renewed.serial, svid.serial);
    common::assert_x509_svid_profile(&renewed.chain_der[0], &renewed.spiffe_id);
    let (ok, output) = common::openssl_verify(root, &renewed.chain_der, "sslclient");
    assert!(ok, "openssl verify renewed: {output}");

    // Mint a JWT-SVID with the renewed SVID; verify it with jwt-simple against /keys.
    let minted = broker.mint(&renewed, "payments", 0).await.unwrap();
    assert_eq!(minted.spiffe_id, svid.spiffe_id);
    let (status, jwks) = broker.http_get("/keys").await;
    assert_eq!(status, 200);
    let subject = common::jwt_simple_verify(&jwks, &minted.token, "payments").unwrap();
    assert_eq!(subject, svid.spiffe_id);
    // Negative control for the independent verifier: a different audience fails.
    assert!(common::jwt_simple_verify(&jwks, &minted.token, "ledger").is_err());

    // The token's header and claims are exactly what JWT-SVID.md asks for.
    let parts: Vec<&str> = minted.token.split('.').collect();
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let mut header_keys: Vec<_> = header.as_object().unwrap().keys().cloned().collect();
    header_keys.sort();
    assert_eq!(header_keys, ["alg", "kid", "typ"]);
    assert_eq!(header["alg"], "ES256");
    let claims: serde_json::Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["aud"], "payments", "a single aud string");
    assert!(claims["exp"].is_i64() && claims["iat"].is_i64() && claims["jti"].is_string());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300,
        "entry default 5 min"
    );

    // ValidateJwtSvid says who it is.
    let valid = broker.validate(&minted.token, "payments").await.unwrap();
    assert_eq!(valid.spiffe_id, svid.spiffe_id);
    assert_eq!(valid.jti, minted.jti);

    // Shorter TTL is allowed; longer is not.
    let short = broker.mint(&renewed, "ledger", 60).await.unwrap();
    assert!(short.expires_at <= minted.expires_at);
    assert_refused(
        broker.mint(&renewed, "ledger", 301).await,
        Code::InvalidArgument,
        "longer than",
    );

    // The HTTP endpoint serves discovery, the SPIFFE bundle and health.
    let (status, discovery) = broker.http_get("/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    let discovery: serde_json::Value = serde_json::from_str(&discovery).unwrap();
    assert!(discovery["jwks_uri"].as_str().unwrap().ends_with("/keys"));
    let (status, bundle) = broker.http_get("/bundle").await;
    assert_eq!(status, 200);
    let bundle = mayfly_sdk::bundle::SpiffeBundle::parse(
        mayfly_sdk::TrustDomain::new(TRUST_DOMAIN).unwrap(),
        bundle.as_bytes(),
    )
    .unwrap();
    assert_eq!(bundle.x509_authorities, svid.bundle.x509_authorities);
    assert_eq!(broker.http_get("/healthz").await.0, 200);
    assert_eq!(broker.http_get("/readyz").await.0, 200);
    assert_eq!(broker.http_get("/nope").await.0, 404);

    // Usage is tracked per entry.
    let shown = broker
        .admin()
        .await
        .get_entry(pb::GetEntryRequest {
            id: entry.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        shown.mint_count >= 4,
        "attest, renew, two mints: {}",
        shown.mint_count
    );
    assert!(shown.last_minted_at > 0);
}

#[tokio::test]
async fn csr_extensions_and_subject_are_ignored() {
    let broker = TestBroker::start().await;
    let entry = broker.create_entry("/devices/sensor", &["telemetry"]).await;
    let token = broker.join_token(&entry.id, 0).await;
    // A CSR that asks for CA:true, keyCertSign, extra SANs and a subject.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example.com".to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("spiffe://example.org/admin").unwrap(),
    ));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "root-of-all-evil");
    let csr = params.serialize_request(&key).unwrap().der().to_vec();
    let response = broker
        .broker()
        .await
        .attest_and_issue(pb::AttestAndIssueRequest {
            evidence: Some(pb::attest_and_issue_request::Evidence::JoinToken(
                pb::JoinTokenEvidence { token },
            )),
            csr,
            spiffe_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let svid = response.svid.unwrap();
    common::assert_x509_svid_profile(
        &svid.cert_chain[0],
        &format!("spiffe://{TRUST_DOMAIN}/devices/sensor"),
    );
    use x509_parser::prelude::*;
    let (_, leaf) = X509Certificate::from_der(&svid.cert_chain[0]).unwrap();
    let text = format!(
        "{:?}",
        leaf.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
    );
    assert!(
        !text.contains("evil.example.com") && !text.contains("/admin"),
        "CSR SANs leaked: {text}"
    );
    assert!(!leaf.subject().to_string().contains("root-of-all-evil"));
    // Only the CSR's public key is used.
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    let (ok, output) = common::openssl_verify(
        &response.bundle.unwrap().x509_authorities[0],
        &svid.cert_chain,
        "sslclient",
    );
    assert!(ok, "{output}");
}

#[tokio::test]
async fn join_token_refusals_each_have_their_own_status() {
    let broker = TestBroker::start().await;
    let entry = broker.create_entry("/ci/job", &["deploy"]).await;

    // Positive control, then reuse.
    let token = broker.join_token(&entry.id, 0).await;
    assert!(broker.attest(&token).await.is_ok());
    assert_refused(
        broker.attest(&token).await,
        Code::Unauthenticated,
        "already used",
    );

    // Unknown (well-formed) and malformed tokens.
    let unknown = format!("mf1.{}", B64.encode([7u8; 32]));
    assert_refused(
        broker.attest(&unknown).await,
        Code::Unauthenticated,
        "unknown join token",
    );
    assert_refused(
        broker.attest("not-a-token").await,
        Code::Unauthenticated,
        "malformed",
    );

    // A bad CSR is refused without burning the token.
    let fresh = broker.join_token(&entry.id, 0).await;
    let bad_csr = broker
        .broker()
        .await
        .attest_and_issue(pb::AttestAndIssueRequest {
            evidence: Some(pb::attest_and_issue_request::Evidence::JoinToken(
                pb::JoinTokenEvidence {
                    token: fresh.clone(),
                },
            )),
            csr: vec![0x30, 0x03, 0x02, 0x01, 0x00],
            spiffe_id: String::new(),
        })
        .await;
    assert_refused(bad_csr, Code::InvalidArgument, "csr");
    assert!(
        broker.attest(&fresh).await.is_ok(),
        "token still good after a bad CSR"
    );

    // Expiry, on the broker's clock: a 60 s token, then 2 minutes later.
    let short = broker.join_token(&entry.id, 60).await;
    let later = broker.join_token(&entry.id, 600).await;
    broker.clock.advance(Duration::from_secs(120));
    assert_refused(
        broker.attest(&short).await,
        Code::Unauthenticated,
        "expired",
    );
    assert!(
        broker.attest(&later).await.is_ok(),
        "positive control: unexpired token"
    );

    // Every refusal is in the audit log with its reason, and no secret is.
    let log = common::read_audit(&broker.data_dir());
    assert!(log.contains("already used"));
    assert!(log.contains("unknown join token"));
    assert!(
        !log.contains(&token),
        "the audit log must not contain a token"
    );
}

#[tokio::test]
async fn mint_refusals_each_have_their_own_status() {
    let broker = TestBroker::start().await;
    let (entry, svid) = broker.enrolled("/web/frontend", &["orders"]).await;

    assert!(broker.mint(&svid, "orders", 0).await.is_ok());
    assert_refused(
        broker.mint(&svid, "marketing", 0).await,
        Code::PermissionDenied,
        "not allowed",
    );
    assert_refused(
        broker.mint(&svid, "", 0).await,
        Code::InvalidArgument,
        "audience",
    );

    // Without a client certificate, mint and renew are refused.
    let anonymous = broker
        .broker()
        .await
        .mint_jwt_svid(pb::MintJwtSvidRequest {
            audience: "orders".into(),
            ttl_seconds: 0,
        })
        .await;
    assert_refused(anonymous, Code::Unauthenticated, "mtls");

    // An entry restricted to x509 cannot mint JWTs.
    let (_, x509_only) = broker.enrolled("/web/x509-only", &["orders"]).await;
    let mut admin = broker.admin().await;
    let spiffe = format!("spiffe://{TRUST_DOMAIN}/web/x509-only");
    admin
        .update_entry(pb::UpdateEntryRequest {
            id: spiffe,
            spec: Some(pb::EntrySpec {
                kinds: Some(pb::StringList {
                    values: vec!["x509".into()],
                }),
                ..pb::EntrySpec::default()
            }),
        })
        .await
        .unwrap();
    assert_refused(
        broker.mint(&x509_only, "orders", 0).await,
        Code::PermissionDenied,
        "does not allow jwt",
    );
    assert!(broker.renew(&x509_only).await.is_ok(), "x509 still allowed");

    // A deleted entry mints nothing either.
    let (gone, gone_svid) = broker.enrolled("/web/gone", &["orders"]).await;
    admin
        .delete_entry(pb::DeleteEntryRequest { id: gone.id })
        .await
        .unwrap();
    assert_refused(
        broker.mint(&gone_svid, "orders", 0).await,
        Code::PermissionDenied,
        "no entry",
    );

    // Expired entry (last: the clock moves past real time, so no new
    // certificate is issued after this): it expires in 60 s; two minutes later it mints nothing.
    let soon = mayfly::clock::Clock::unix_now(broker.clock.as_ref()) + 60;
    admin
        .update_entry(pb::UpdateEntryRequest {
            id: entry.id.clone(),
            spec: Some(pb::EntrySpec {
                expires_at: Some(soon),
                ..pb::EntrySpec::default()
            }),
        })
        .await
        .unwrap();
    assert!(
        broker.mint(&svid, "orders", 0).await.is_ok(),
        "positive control before expiry"
    );
    broker.clock.advance(Duration::from_secs(120));
    assert_refused(
        broker.mint(&svid, "orders", 0).await,
        Code::PermissionDenied,
        "expired",
    );
}

#[tokio::test]
async fn validation_refusals_each_have_their_own_status() {
    let broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/api/server", &["inventory"]).await;
    let minted = broker.mint(&svid, "inventory", 60).await.unwrap();
    let token = minted.token.clone();
    let parts: Vec<&str> = token.split('.').collect();

    // Positive control.
    assert!(broker.validate(&token, "inventory").await.is_ok());
    // Wrong audience; missing audience.
    assert_refused(
        broker.validate(&token, "billing").await,
        Code::Unauthenticated,
        "audience",
    );
    assert_refused(
        broker.validate(&token, "").await,
        Code::InvalidArgument,
        "audience",
    );

    // Tampered payload: same header and signature, different claims.
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = serde_json::Value::String(format!("spiffe://{TRUST_DOMAIN}/admin"));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    );
    assert_refused(
        broker.validate(&tampered, "inventory").await,
        Code::Unauthenticated,
        "signature",
    );

    // alg: none.
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap();
    let none_header = serde_json::json!({"alg": "none", "kid": kid, "typ": "JWT"});
    let none = format!("{}.{}.", B64.encode(none_header.to_string()), parts[1]);
    assert_refused(
        broker.validate(&none, "inventory").await,
        Code::Unauthenticated,
        "algorithm",
    );

    // HS256, HMAC-keyed with the broker's public key (the classic confusion attack).
    let (_, jwks) = broker.http_get("/keys").await;
    let hs_header = serde_json::json!({"alg": "HS256", "kid": kid, "typ": "JWT"});
    let signing_input = format!("{}.{}", B64.encode(hs_header.to_string()), parts[1]);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, jwks.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    let hs256 = format!("{signing_input}.{}", B64.encode(tag.as_ref()));
    assert_refused(
        broker.validate(&hs256, "inventory").await,
        Code::Unauthenticated,
        "algorithm",
    );

    // Unknown kid.
    let other_kid = serde_json::json!({"alg": "ES256", "kid": "somebody-else", "typ": "JWT"});
    let unknown = format!(
        "{}.{}.{}",
        B64.encode(other_kid.to_string()),
        parts[1],
        parts[2]
    );
    assert_refused(
        broker.validate(&unknown, "inventory").await,
        Code::Unauthenticated,
        "somebody-else",
    );

    // Oversized and garbage tokens.
    assert_refused(
        broker.validate(&"a".repeat(9000), "inventory").await,
        Code::InvalidArgument,
        "larger than",
    );
    assert_refused(
        broker.validate("a.b", "inventory").await,
        Code::Unauthenticated,
        "rejected",
    );

    // Expired: a 60 s token, two minutes later (past the 30 s leeway).
    broker.clock.advance(Duration::from_secs(120));
    assert_refused(
        broker.validate(&token, "inventory").await,
        Code::Unauthenticated,
        "expired",
    );
}

#[tokio::test]
async fn restart_keeps_ca_keys_entries_and_audit_chain() {
    let mut broker = TestBroker::start().await;
    let (entry, svid) = broker.enrolled("/store/db", &["postgres"]).await;
    let minted = broker.mint(&svid, "postgres", 0).await.unwrap();
    let root_before = broker.server().report().root_fingerprint.clone();
    let kid_before = broker.server().report().jwt_key_id.clone();
    let records_before = mayfly::audit::verify(&broker.data_dir().join("audit"))
        .unwrap()
        .records;
    assert!(broker.server().report().created_root);

    broker.restart().await;

    assert!(
        !broker.server().report().created_root,
        "the root is loaded, not made again"
    );
    assert_eq!(broker.server().report().root_fingerprint, root_before);
    assert_eq!(broker.server().report().jwt_key_id, kid_before);
    // The entry survived, and a JWT minted before the restart still validates.
    let shown = broker
        .admin()
        .await
        .get_entry(pb::GetEntryRequest {
            id: entry.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.spiffe_id, entry.spiffe_id);
    assert!(
        shown.mint_count >= 2,
        "usage saved at shutdown: {}",
        shown.mint_count
    );
    assert_eq!(
        broker
            .validate(&minted.token, "postgres")
            .await
            .unwrap()
            .spiffe_id,
        svid.spiffe_id
    );
    // The SVID issued before the restart still authenticates.
    assert!(broker.mint(&svid, "postgres", 0).await.is_ok());
    broker.stop().await;

    // The chain continued across the restart.
    let audit_dir = broker.data_dir().join("audit");
    let report = mayfly::audit::verify(&audit_dir).unwrap();
    assert!(
        report.problem.is_none(),
        "{:?}",
        report.problem.map(|p| p.to_string())
    );
    assert!(report.records > records_before);

    // Tamper with one record: verify names that line.
    let log_path = audit_dir.join("audit.log");
    let text = std::fs::read_to_string(&log_path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let target = lines
        .iter()
        .position(|l| l.contains("\"jwt.mint\""))
        .unwrap();
    lines[target] = lines[target].replace("postgres", "postgreZ");
    std::fs::write(&log_path, lines.join("\n") + "\n").unwrap();
    let report = mayfly::audit::verify(&audit_dir).unwrap();
    let problem = report.problem.expect("tampering must be detected");
    assert_eq!(problem.line, target as u64 + 1, "{problem}");
}

#[tokio::test]
async fn key_files_are_private_and_loose_permissions_refuse_start() {
    use std::os::unix::fs::PermissionsExt;
    let mut broker = TestBroker::start().await;
    broker.stop().await;
    let key = common::active_ca_file(&broker.data_dir(), "intermediate", "key");
    let key_name = key.file_name().unwrap().to_string_lossy().to_string();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = common::test_config(broker.data_dir());
    let error = mayfly::server::start(config.clone())
        .await
        .expect_err("must refuse a readable key");
    assert!(error.to_string().contains(&key_name), "{error}");
    // Positive control: fixed permissions start again.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    mayfly::server::start(config)
        .await
        .unwrap()
        .shutdown()
        .await;
}

#[tokio::test]
async fn bundle_is_served_and_watched() {
    use tokio_stream::StreamExt;
    let broker = TestBroker::start().await;
    let mut client = broker.broker().await;
    let bundle = client
        .get_bundle(pb::GetBundleRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bundle.trust_domain, TRUST_DOMAIN);
    assert_eq!(bundle.x509_authorities.len(), 1);
    assert!(bundle.sequence >= 1);
    // The bundle file the server wrote for clients holds the same root.
    let pem = String::from_utf8(broker.bundle_pem()).unwrap();
    assert_eq!(pem, common::pem("CERTIFICATE", &bundle.x509_authorities[0]));
    // WatchBundle sends the current bundle at once.
    let mut stream = client
        .watch_bundle(pb::WatchBundleRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("first message at once")
        .unwrap()
        .unwrap();
    assert_eq!(first, bundle);
    let parsed = mayfly_sdk::bundle::SpiffeBundle::parse(
        mayfly_sdk::TrustDomain::new(TRUST_DOMAIN).unwrap(),
        &first.spiffe_bundle_json,
    )
    .unwrap();
    assert_eq!(parsed.jwt_authorities.len(), 1);
    assert_eq!(
        parsed.jwt_authorities[0].key_id,
        broker.server().report().jwt_key_id
    );
}
