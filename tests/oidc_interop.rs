//! JWT-SVIDs through OIDC discovery, as a relying party outside Rust sees
//! them: PyJWT (PyPI `PyJWT[crypto]`) finds the keys from the broker's
//! `/.well-known/openid-configuration` alone and checks the token's
//! signature, audience, issuer and required claims, next to the forgeries it
//! must refuse (tests/interop/python/oidc_relying_party.py).
//!
//! The Python environment is the one tests/common/interop.rs installs for
//! the Workload API interop tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestBroker;

const AUDIENCE: &str = "payments";

#[tokio::test]
async fn pyjwt_verifies_jwt_svids_from_oidc_discovery_and_refuses_forgeries() {
    let Some(clients) = common::interop::clients_or_skip() else {
        return;
    };
    let broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/billing/api", &[AUDIENCE]).await;
    let minted = broker.mint(&svid, AUDIENCE, 0).await.unwrap();
    let discovery = format!(
        "http://{}/.well-known/openid-configuration",
        broker.server().http_addr()
    );
    let (_, document) = broker.http_get("/.well-known/openid-configuration").await;
    let document: serde_json::Value = serde_json::from_str(&document).unwrap();

    // The script's socket argument is unused: it talks HTTP only.
    let unused_socket = broker.data_dir().join("no.sock");
    let run = clients
        .run_python(
            "oidc_relying_party.py",
            &[
                "--discovery",
                &discovery,
                "--token",
                &minted.token,
                "--audience",
                AUDIENCE,
            ],
            &unused_socket,
        )
        .await;
    assert!(run.success, "{}", run.transcript);
    let json = &run.json;
    assert_eq!(json["sub"], minted.spiffe_id, "{}", run.transcript);
    assert_eq!(json["aud"], AUDIENCE);
    assert_eq!(json["iss"], document["issuer"]);
    assert_eq!(json["issuer"], document["issuer"]);
    // Governance claims are off by default: none in the token.
    assert_eq!(
        json["governance"],
        serde_json::json!({}),
        "{}",
        run.transcript
    );
    let checks: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check.as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "accepted",
            "another audience",
            "another issuer",
            "a flipped signature",
            "a stranger's key under the token's kid",
            "alg none",
        ],
        "{}",
        run.transcript
    );

    // Negative control of the harness: a token for another audience makes
    // the script fail, so its success above means something.
    let other = broker.enrolled("/billing/other", &["ledger"]).await.1;
    let wrong = broker.mint(&other, "ledger", 0).await.unwrap();
    let refused = clients
        .run_python(
            "oidc_relying_party.py",
            &[
                "--discovery",
                &discovery,
                "--token",
                &wrong.token,
                "--audience",
                AUDIENCE,
            ],
            &unused_socket,
        )
        .await;
    assert!(!refused.success, "{}", refused.transcript);
    assert!(
        refused.json["failed"]
            .as_str()
            .unwrap()
            .contains("InvalidAudienceError"),
        "{}",
        refused.transcript
    );
}

#[tokio::test]
async fn pyjwt_reads_the_governance_claims_when_they_are_on() {
    let Some(clients) = common::interop::clients_or_skip() else {
        return;
    };
    let broker = TestBroker::start_on_manual_clock(|config| {
        config.jwt_governance_claims = true;
    })
    .await;
    let (_, svid) = broker.enrolled("/billing/api", &[AUDIENCE]).await;
    let minted = broker.mint(&svid, AUDIENCE, 0).await.unwrap();
    let discovery = format!(
        "http://{}/.well-known/openid-configuration",
        broker.server().http_addr()
    );
    let unused_socket = broker.data_dir().join("no.sock");
    let run = clients
        .run_python(
            "oidc_relying_party.py",
            &[
                "--discovery",
                &discovery,
                "--token",
                &minted.token,
                "--audience",
                AUDIENCE,
            ],
            &unused_socket,
        )
        .await;
    assert!(run.success, "{}", run.transcript);
    // The entry's environment and data class (tests/common's entry_spec),
    // in a token PyJWT verified.
    assert_eq!(
        run.json["governance"],
        serde_json::json!({"mayfly_env": "test", "mayfly_data_class": "phi"}),
        "{}",
        run.transcript
    );
}
