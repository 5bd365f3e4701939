//! The broker's side of agents: an agent, authenticated by its own
//! X509-SVID, sees and obtains exactly the identities registered under it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TRUST_DOMAIN, TestBroker};
use mayfly_sdk::proto::v1 as pb;
use tonic::Code;

async fn child_entry(broker: &TestBroker, path: &str, parent: &str) -> pb::Entry {
    let spec = pb::EntrySpec {
        spiffe_id: Some(format!("spiffe://{TRUST_DOMAIN}{path}")),
        selectors: Some(pb::StringList {
            values: vec!["unix:uid:1000".into()],
        }),
        audiences: Some(pb::StringList {
            values: vec!["orders".into()],
        }),
        owner: Some("team@example.org".into()),
        purpose: Some("agent test".into()),
        // The agents' environment: a workload must be in its agent's.
        environment: Some("test".into()),
        parent_id: Some(parent.into()),
        ..pb::EntrySpec::default()
    };
    broker
        .admin()
        .await
        .create_entry(pb::CreateEntryRequest { spec: Some(spec) })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn an_agent_obtains_only_the_identities_registered_under_it() {
    let broker = TestBroker::start().await;
    let (_, agent) = broker.enrolled("/agent/node-1", &["unused"]).await;
    let (_, other_agent) = broker.enrolled("/agent/node-2", &["unused"]).await;
    let mine = child_entry(&broker, "/web/frontend", &agent.spiffe_id).await;
    let theirs = child_entry(&broker, "/web/backend", &other_agent.spiffe_id).await;
    assert_eq!(mine.parent_id, agent.spiffe_id);

    let mut client = broker.broker_as(&agent).await;
    let listed = client
        .list_agent_entries(pb::ListAgentEntriesRequest {})
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed.entries.iter().map(|e| e.entry_id.clone()).collect();
    assert_eq!(
        ids,
        vec![mine.id.clone()],
        "only entries whose parent is the caller"
    );
    assert_eq!(listed.entries[0].selectors, vec!["unix:uid:1000"]);
    assert!(listed.bundle.is_some());

    // Batch X.509: mine succeeds (and verifies independently), theirs is refused.
    let (_, csr_a) = mayfly_sdk::client::new_key_and_csr().unwrap();
    let (_, csr_b) = mayfly_sdk::client::new_key_and_csr().unwrap();
    let batch = client
        .batch_mint_x509_svids(pb::BatchMintX509SvidsRequest {
            params: vec![
                pb::X509SvidParams {
                    entry_id: mine.id.clone(),
                    csr: csr_a,
                },
                pb::X509SvidParams {
                    entry_id: theirs.id.clone(),
                    csr: csr_b,
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let svid = batch.results[0].svid.as_ref().expect("mine is issued");
    assert_eq!(
        svid.spiffe_id,
        format!("spiffe://{TRUST_DOMAIN}/web/frontend")
    );
    let root = &batch.bundle.as_ref().unwrap().x509_authorities[0];
    let (ok, output) = common::openssl_verify(root, &svid.cert_chain, "sslclient");
    assert!(ok, "{output}");
    let refused = batch.results[1].error.as_ref().expect("theirs is refused");
    assert_eq!(refused.code, Code::PermissionDenied as i32);
    assert!(
        refused.message.contains("not registered under agent"),
        "{}",
        refused.message
    );

    // Batch JWT: an allowed audience, a disallowed one.
    let jwts = client
        .batch_mint_jwt_svids(pb::BatchMintJwtSvidsRequest {
            params: vec![
                pb::JwtSvidParams {
                    entry_id: mine.id.clone(),
                    audience: "orders".into(),
                    ttl_seconds: 0,
                },
                pb::JwtSvidParams {
                    entry_id: mine.id.clone(),
                    audience: "billing".into(),
                    ttl_seconds: 0,
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let token = &jwts.results[0].svid.as_ref().unwrap().token;
    let (_, jwks) = broker.http_get("/keys").await;
    assert_eq!(
        common::jwt_simple_verify(&jwks, token, "orders").unwrap(),
        format!("spiffe://{TRUST_DOMAIN}/web/frontend")
    );
    assert_eq!(
        jwts.results[1].error.as_ref().unwrap().code,
        Code::PermissionDenied as i32
    );

    // The audit log says which agent obtained it.
    let log = common::read_audit(&broker.data_dir());
    assert!(log.contains("via_agent") && log.contains("/agent/node-1"));

    // Without a client certificate: refused; an empty batch: refused.
    let anonymous = broker
        .broker()
        .await
        .list_agent_entries(pb::ListAgentEntriesRequest {})
        .await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    let empty = client
        .batch_mint_x509_svids(pb::BatchMintX509SvidsRequest { params: vec![] })
        .await;
    assert_eq!(empty.unwrap_err().code(), Code::InvalidArgument);

    // The other agent sees only its own entry.
    let listed = broker
        .broker_as(&other_agent)
        .await
        .list_agent_entries(pb::ListAgentEntriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    assert_eq!(listed.entries[0].entry_id, theirs.id);
}
