//! The broker's JWT-SVID cache: the same token for the same identity,
//! audience and TTL until half its lifetime has passed, never for an entry
//! that requires unique `jti`s, never after a revocation of it or an update
//! of its entry; every mint audited, hits marked `reused`. Each refusal to
//! reuse runs next to a positive control that reuse happens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Svid, TRUST_DOMAIN, TestBroker};
use mayfly_sdk::proto::v1 as pb;
use tonic::Code;

/// An entry created from `spec`, and the SVID its join token yields.
async fn enrolled_with(broker: &TestBroker, spec: pb::EntrySpec) -> (pb::Entry, Svid) {
    let entry = broker.create_entry_from(spec).await.unwrap();
    let token = broker.join_token(&entry.id, 0).await;
    let svid = broker.attest(&token).await.unwrap();
    (entry, svid)
}

/// The `jwt.mint` records of the audit log, in order.
fn mint_records(broker: &TestBroker) -> Vec<serde_json::Value> {
    common::read_audit(&broker.data_dir())
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["action"] == "jwt.mint")
        .collect()
}

/// One JWT-SVID for `entry_id` and audience `orders`, through the agent API.
async fn agent_mint(
    client: &mut pb::broker_client::BrokerClient<tonic::transport::Channel>,
    entry_id: &str,
) -> pb::MintJwtSvidResponse {
    let response = client
        .batch_mint_jwt_svids(pb::BatchMintJwtSvidsRequest {
            params: vec![pb::JwtSvidParams {
                entry_id: entry_id.into(),
                audience: "orders".into(),
                ttl_seconds: 0,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let result = response.results.into_iter().next().unwrap();
    result.svid.unwrap_or_else(|| panic!("{:?}", result.error))
}

fn reused(record: &serde_json::Value) -> bool {
    record["detail"]["reused"] == true
}

#[tokio::test]
async fn the_same_identity_and_audience_get_the_same_token_until_half_its_life() {
    let broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/api", &["db", "cache"]).await;
    let (_, jwks) = broker.http_get("/keys").await;

    let first = broker.mint(&svid, "db", 0).await.unwrap();
    let second = broker.mint(&svid, "db", 0).await.unwrap();
    assert_eq!(second.token, first.token);
    assert_eq!(second.jti, first.jti);
    assert_eq!(second.expires_at, first.expires_at);
    // The reused token passes an independent JOSE verifier and the broker.
    assert_eq!(
        common::jwt_simple_verify(&jwks, &second.token, "db").unwrap(),
        svid.spiffe_id
    );
    assert_eq!(
        broker.validate(&second.token, "db").await.unwrap().jti,
        first.jti
    );

    // Another audience, or another TTL, is another token.
    let cache = broker.mint(&svid, "cache", 0).await.unwrap();
    assert_ne!(cache.jti, first.jti);
    common::jwt_simple_verify(&jwks, &cache.token, "cache").unwrap();
    assert!(common::jwt_simple_verify(&jwks, &cache.token, "db").is_err());
    let short = broker.mint(&svid, "db", 60).await.unwrap();
    assert_ne!(short.jti, first.jti);
    assert!(short.expires_at < first.expires_at);

    // The entry's 300 s lifetime: exactly half left is still reused ...
    broker.clock.advance(Duration::from_secs(150));
    let at_half = broker.mint(&svid, "db", 0).await.unwrap();
    assert_eq!(at_half.jti, first.jti);
    // ... a second later, a new token is signed, and reused in turn.
    broker.clock.advance(Duration::from_secs(1));
    let renewed = broker.mint(&svid, "db", 0).await.unwrap();
    assert_ne!(renewed.jti, first.jti);
    assert_eq!(renewed.expires_at, first.expires_at + 151);
    broker.validate(&renewed.token, "db").await.unwrap();
    let again = broker.mint(&svid, "db", 0).await.unwrap();
    assert_eq!(again.jti, renewed.jti);

    // One audit record per mint, each with the jti it handed out; only the
    // hits say `reused`.
    let records = mint_records(&broker);
    let summary: Vec<(String, bool)> = records
        .iter()
        .map(|r| (r["jti"].as_str().unwrap().to_owned(), reused(r)))
        .collect();
    assert_eq!(
        summary,
        vec![
            (first.jti.clone(), false),
            (first.jti.clone(), true),
            (cache.jti.clone(), false),
            (short.jti.clone(), false),
            (first.jti.clone(), true),
            (renewed.jti.clone(), false),
            (renewed.jti.clone(), true),
        ]
    );
    assert!(records.iter().all(|r| r["outcome"] == "granted"));
    // Usage counts hits too: seven JWTs and the X509-SVID.
    let shown = broker
        .admin()
        .await
        .get_entry(pb::GetEntryRequest {
            id: svid.spiffe_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.mint_count, 8);
}

#[tokio::test]
async fn an_entry_that_requires_unique_jti_gets_a_fresh_token_every_time() {
    let broker = TestBroker::start().await;
    let mut spec = TestBroker::entry_spec("/api", &["db"], &[]);
    spec.unique_jti = Some(true);
    let (entry, svid) = enrolled_with(&broker, spec).await;
    assert!(entry.unique_jti);
    let (_, jwks) = broker.http_get("/keys").await;

    let mut jtis = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let minted = broker.mint(&svid, "db", 0).await.unwrap();
        common::jwt_simple_verify(&jwks, &minted.token, "db").unwrap();
        broker.validate(&minted.token, "db").await.unwrap();
        jtis.insert(minted.jti);
    }
    assert_eq!(jtis.len(), 3, "every mint has its own jti");
    assert!(mint_records(&broker).iter().all(|r| !reused(r)));

    // Positive control on the same identity: with the setting off, reuse.
    let updated = broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                unique_jti: Some(false),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    assert!(!updated.unique_jti);
    let first = broker.mint(&svid, "db", 0).await.unwrap();
    let second = broker.mint(&svid, "db", 0).await.unwrap();
    assert!(!jtis.contains(&first.jti));
    assert_eq!(second.jti, first.jti);

    // And on again: nothing cached before is handed out.
    broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                unique_jti: Some(true),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    let third = broker.mint(&svid, "db", 0).await.unwrap();
    let fourth = broker.mint(&svid, "db", 0).await.unwrap();
    assert_ne!(third.jti, first.jti);
    assert_ne!(fourth.jti, third.jti);
}

#[tokio::test]
async fn a_revoked_cached_token_is_never_handed_out_again() {
    let broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/api", &["db"]).await;
    let (_, jwks) = broker.http_get("/keys").await;
    let leaked = broker.mint(&svid, "db", 0).await.unwrap();
    assert_eq!(
        broker.mint(&svid, "db", 0).await.unwrap().jti,
        leaked.jti,
        "control: cached before the revocation"
    );

    common::revoke_via(
        broker.admin().await,
        "jti",
        &leaked.jti,
        "pasted in a ticket",
    )
    .await
    .unwrap();
    let refused = broker.validate(&leaked.token, "db").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("revoked"), "{refused:?}");

    let next = broker.mint(&svid, "db", 0).await.unwrap();
    assert_ne!(next.jti, leaked.jti, "the revoked token is not reused");
    assert_ne!(next.token, leaked.token);
    assert_eq!(
        broker.validate(&next.token, "db").await.unwrap().jti,
        next.jti
    );
    assert_eq!(
        common::jwt_simple_verify(&jwks, &next.token, "db").unwrap(),
        svid.spiffe_id
    );
    // The new token is cached in its place.
    assert_eq!(broker.mint(&svid, "db", 0).await.unwrap().jti, next.jti);
    let records = mint_records(&broker);
    assert!(!reused(&records[2]) && records[2]["jti"] == next.jti.as_str());
    assert!(
        records
            .iter()
            .skip(2)
            .all(|r| r["jti"] != leaked.jti.as_str())
    );
}

#[tokio::test]
async fn an_updated_entry_gets_a_new_token_and_a_blocked_one_none() {
    let broker = TestBroker::start().await;
    let (entry, svid) = broker.enrolled("/api", &["db"]).await;
    let before = broker.mint(&svid, "db", 0).await.unwrap();
    assert_eq!(broker.mint(&svid, "db", 0).await.unwrap().jti, before.jti);

    let updated = broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                purpose: Some("a new purpose".into()),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.revision, entry.revision + 1);
    let after = broker.mint(&svid, "db", 0).await.unwrap();
    assert_ne!(after.jti, before.jti, "minted under the new revision");
    assert_eq!(broker.mint(&svid, "db", 0).await.unwrap().jti, after.jti);

    // The entry's checks run before the cache: an audience taken away is
    // refused at once, though a token for it is cached.
    broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                audiences: Some(pb::StringList {
                    values: vec!["other".into()],
                }),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    let denied = broker.mint(&svid, "db", 0).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    // So is an identity whose minting is revoked.
    broker.mint(&svid, "other", 0).await.unwrap();
    common::revoke_via(broker.admin().await, "entry", &entry.id, "retired")
        .await
        .unwrap();
    let blocked = broker.mint(&svid, "other", 0).await.unwrap_err();
    assert!(
        matches!(
            blocked.code(),
            Code::PermissionDenied | Code::Unauthenticated
        ),
        "{blocked:?}"
    );
    let last = mint_records(&broker).pop().unwrap();
    assert_eq!(last["outcome"], "refused");
}

#[tokio::test]
async fn an_agent_gets_the_cached_token_and_the_audit_keeps_both_details() {
    let broker = TestBroker::start().await;
    let (_, agent) = broker.enrolled("/agent/node-1", &["unused"]).await;
    let mut spec = TestBroker::entry_spec("/web", &["orders"], &["unix:uid:1000"]);
    spec.parent_id = Some(agent.spiffe_id.clone());
    let child = broker.create_entry_from(spec).await.unwrap();
    let mut client = broker.broker_as(&agent).await;
    let first = agent_mint(&mut client, &child.id).await;
    let second = agent_mint(&mut client, &child.id).await;
    assert_eq!(second.token, first.token);
    let (_, jwks) = broker.http_get("/keys").await;
    assert_eq!(
        common::jwt_simple_verify(&jwks, &second.token, "orders").unwrap(),
        format!("spiffe://{TRUST_DOMAIN}/web")
    );
    let records = mint_records(&broker);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["detail"]["via_agent"], agent.spiffe_id.as_str());
    assert!(!reused(&records[0]));
    assert_eq!(records[1]["detail"]["via_agent"], agent.spiffe_id.as_str());
    assert!(reused(&records[1]));
    assert_eq!(records[1]["jti"], records[0]["jti"]);
}
