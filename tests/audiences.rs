//! Registered audiences against a real broker: the admin RPCs (with their
//! error codes and audit records), every refusal at JWT mint with its
//! reason and audit record next to a positive control (a cached token
//! included), `require_registered_audiences` on and off, entries that
//! certainly conflict refused at create/update, `mayfly audience …` through
//! the binary, the optional governance claims (read by jwt-simple) on and
//! off, and a second replica on Redis enforcing an audience registered on
//! the first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::TestBroker;
use common::redis::{PrefixGuard, redis_url_or_skip};
use mayfly::clock::{Clock, ManualClock};
use mayfly::config::{Config, StoreLocation};
use mayfly::server::RunningServer;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::admin_client::AdminClient;
use tonic::Code;
use tonic::transport::Channel;

/// Every audit record with `action`, in order.
fn records(data_dir: &Path, action: &str) -> Vec<serde_json::Value> {
    common::read_audit(data_dir)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["action"] == action)
        .collect()
}

/// The refused `jwt.mint` records for `audience`.
fn refused_mints(data_dir: &Path, audience: &str) -> Vec<serde_json::Value> {
    records(data_dir, "jwt.mint")
        .into_iter()
        .filter(|r| r["outcome"] == "refused" && r["audience"] == audience)
        .collect()
}

fn create_request(name: &str, environment: &str, data_class: &str) -> pb::CreateAudienceRequest {
    pb::CreateAudienceRequest {
        name: name.into(),
        owner: "team-relying-party".into(),
        environment: environment.into(),
        data_class: data_class.into(),
        description: String::new(),
    }
}

async fn register(
    admin: &mut AdminClient<Channel>,
    name: &str,
    environment: &str,
    data_class: &str,
) -> Result<pb::Audience, tonic::Status> {
    admin
        .create_audience(create_request(name, environment, data_class))
        .await
        .map(tonic::Response::into_inner)
}

fn update(name: &str) -> pb::UpdateAudienceRequest {
    pb::UpdateAudienceRequest {
        name: name.into(),
        ..pb::UpdateAudienceRequest::default()
    }
}

#[tokio::test]
async fn audiences_are_managed_with_clear_codes_and_audited() {
    let mut broker = TestBroker::start_on_manual_clock(|_| {}).await;
    let mut admin = broker.admin().await;
    let created = register(&mut admin, "billing-api", "prod", "confidential")
        .await
        .unwrap();
    assert_eq!(created.revision, 1);
    assert_eq!(created.created_at, broker.clock_dyn().unix_now());
    register(&mut admin, "audit-sink", "prod", "none")
        .await
        .unwrap();
    let listed = admin
        .list_audiences(pb::ListAudiencesRequest {})
        .await
        .unwrap()
        .into_inner()
        .audiences;
    let names: Vec<_> = listed.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["audit-sink", "billing-api"], "in name order");
    let got = admin
        .get_audience(pb::GetAudienceRequest {
            name: "billing-api".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    // Refusals, each with its code, changing nothing.
    let duplicate = register(&mut admin, "billing-api", "prod", "none")
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists, "{duplicate:?}");
    let unknown = register(&mut admin, "ledger", "prod", "secret")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown:?}");
    assert!(unknown.message().contains("data_classes"), "{unknown:?}");
    let bad_name = register(&mut admin, "has space", "prod", "none")
        .await
        .unwrap_err();
    assert_eq!(bad_name.code(), Code::InvalidArgument, "{bad_name:?}");
    let no_owner = admin
        .create_audience(pb::CreateAudienceRequest {
            owner: String::new(),
            ..create_request("ledger", "prod", "none")
        })
        .await
        .unwrap_err();
    assert_eq!(no_owner.code(), Code::InvalidArgument, "{no_owner:?}");
    let stale = admin
        .update_audience(pb::UpdateAudienceRequest {
            data_class: Some("phi".into()),
            revision: 7,
            ..update("billing-api")
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    let missing = admin.update_audience(update("nobody")).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let bad_class = admin
        .update_audience(pb::UpdateAudienceRequest {
            data_class: Some("secret".into()),
            ..update("billing-api")
        })
        .await
        .unwrap_err();
    assert_eq!(bad_class.code(), Code::InvalidArgument, "{bad_class:?}");

    // Positive control: the same update at the right revision.
    let updated = admin
        .update_audience(pb::UpdateAudienceRequest {
            data_class: Some("phi".into()),
            description: Some("the billing API".into()),
            revision: 1,
            ..update("billing-api")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.data_class, "phi");
    assert_eq!(updated.environment, "prod", "unset fields stay");

    let deleted = admin
        .delete_audience(pb::DeleteAudienceRequest {
            name: "audit-sink".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.audience.unwrap().name, "audit-sink");
    let again = admin
        .delete_audience(pb::DeleteAudienceRequest {
            name: "audit-sink".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");

    // One audit record per change, with the actor; none for refusals.
    let dir = broker.data_dir();
    let creates = records(&dir, "audience.create");
    assert_eq!(creates.len(), 2, "{creates:?}");
    assert_eq!(creates[0]["audience"], "billing-api");
    assert!(creates[0]["actor"].as_str().unwrap().starts_with("admin"));
    assert_eq!(creates[0]["detail"]["data_class"], "confidential");
    let updates = records(&dir, "audience.update");
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["detail"]["before"]["data_class"], "confidential");
    assert_eq!(updates[0]["detail"]["after"]["data_class"], "phi");
    let deletes = records(&dir, "audience.delete");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0]["audience"], "audit-sink");

    // The registry is durable: a restarted broker loads it from its store.
    broker.restart().await;
    let listed = broker
        .admin()
        .await
        .list_audiences(pb::ListAudiencesRequest {})
        .await
        .unwrap()
        .into_inner()
        .audiences;
    assert_eq!(listed, [updated]);
}

#[tokio::test]
async fn minting_refuses_other_environments_and_classes_above_clearance() {
    let broker = TestBroker::start_on_manual_clock(|_| {}).await;
    // The test entries are in environment "test"; clearance "internal".
    let (entry, svid) = broker
        .enrolled(
            "/billing/api",
            &["same-env", "other-env", "records", "free"],
        )
        .await;
    broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                data_class: Some("internal".into()),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    // Positive control before any registration: every audience mints.
    for audience in ["same-env", "other-env", "records", "free"] {
        broker.mint(&svid, audience, 0).await.unwrap();
    }

    let mut admin = broker.admin().await;
    register(&mut admin, "same-env", "test", "internal")
        .await
        .unwrap();
    register(&mut admin, "other-env", "prod", "none")
        .await
        .unwrap();
    register(&mut admin, "records", "test", "phi")
        .await
        .unwrap();

    // Same environment, class at the clearance: granted (a cached token);
    // unregistered while not required: granted.
    broker.mint(&svid, "same-env", 0).await.unwrap();
    broker.mint(&svid, "free", 0).await.unwrap();

    let refused = broker.mint(&svid, "other-env", 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains("environment \"prod\"") && message.contains("is in \"test\""),
        "{message}"
    );
    let refused = broker.mint(&svid, "records", 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains("\"phi\"")
            && message.contains("clearance \"internal\"")
            && message.contains("none < internal < confidential < phi"),
        "{message}"
    );

    // A clearance outside the order fails closed at mint, naming the fix
    // (the entry got it before the audience was registered).
    let (odd, odd_svid) = broker.enrolled("/odd", &["late"]).await;
    let secret = pb::EntrySpec {
        data_class: Some("secret".into()),
        ..pb::EntrySpec::default()
    };
    broker.update_entry(&odd.id, secret).await.unwrap();
    register(&mut admin, "late", "test", "none").await.unwrap();
    let refused = broker.mint(&odd_svid, "late", 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("\"secret\"")
            && refused.message().contains("add it there or fix the record"),
        "{refused:?}"
    );
    assert_eq!(refused_mints(&broker.data_dir(), "late").len(), 1);
    // Positive control: a clearance in the order.
    let internal = pb::EntrySpec {
        data_class: Some("internal".into()),
        ..pb::EntrySpec::default()
    };
    broker.update_entry(&odd.id, internal).await.unwrap();
    broker.mint(&odd_svid, "late", 0).await.unwrap();

    // Raising the audience's class refuses the cached token too.
    broker.mint(&svid, "same-env", 0).await.unwrap();
    admin
        .update_audience(pb::UpdateAudienceRequest {
            data_class: Some("confidential".into()),
            ..update("same-env")
        })
        .await
        .unwrap();
    let refused = broker.mint(&svid, "same-env", 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Each refusal is audited with its reason; the grants are too.
    let dir = broker.data_dir();
    let other = refused_mints(&dir, "other-env");
    assert_eq!(other.len(), 1, "{other:?}");
    assert!(
        other[0]["reason"].as_str().unwrap().contains("\"prod\""),
        "{other:?}"
    );
    assert_eq!(other[0]["entry_id"], entry.id.as_str());
    let records_refused = refused_mints(&dir, "records");
    assert_eq!(records_refused.len(), 1, "{records_refused:?}");
    assert!(
        records_refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("above the clearance"),
        "{records_refused:?}"
    );
    assert_eq!(refused_mints(&dir, "same-env").len(), 1);
    assert!(refused_mints(&dir, "free").is_empty());

    // The entry names the audience nobody registered.
    let listed = admin
        .get_entry(pb::GetEntryRequest {
            id: entry.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.unregistered_audiences, ["free"]);
}

#[tokio::test]
async fn entries_that_certainly_conflict_are_refused_at_create_and_update() {
    let broker = TestBroker::start_on_manual_clock(|_| {}).await;
    let mut admin = broker.admin().await;
    register(&mut admin, "prod-api", "prod", "none")
        .await
        .unwrap();
    register(&mut admin, "test-api", "test", "none")
        .await
        .unwrap();
    // Positive control: an entry in the audience's environment.
    let entry = broker
        .create_entry_from(TestBroker::entry_spec("/ok", &["test-api"], &[]))
        .await
        .unwrap();
    // Another environment than a registered audience's: refused, unmade.
    let refused = broker
        .create_entry_from(TestBroker::entry_spec("/bad", &["prod-api"], &[]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("mayfly audience update"),
        "{refused:?}"
    );
    let unmade = admin
        .get_entry(pb::GetEntryRequest {
            id: format!("spiffe://{}/bad", common::TRUST_DOMAIN),
        })
        .await
        .unwrap_err();
    assert_eq!(unmade.code(), Code::NotFound, "{unmade:?}");
    // A clearance outside the order, with a registered audience: refused.
    let refused = broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                data_class: Some("secret".into()),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("data_classes"), "{refused:?}");
    // An unregistered audience is no conflict.
    broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                audiences: Some(pb::StringList {
                    values: vec!["test-api".into(), "anything".into()],
                }),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn required_registration_refuses_unregistered_audiences() {
    let strict = TestBroker::start_on_manual_clock(|config| {
        config.governance.require_registered_audiences = true;
    })
    .await;
    let (_, svid) = strict.enrolled("/api", &["known", "unknown"]).await;
    let mut admin = strict.admin().await;
    register(&mut admin, "known", "test", "none").await.unwrap();
    // Positive control: the registered audience mints.
    strict.mint(&svid, "known", 0).await.unwrap();
    let refused = strict.mint(&svid, "unknown", 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("mayfly audience create"),
        "{refused:?}"
    );
    let audited = refused_mints(&strict.data_dir(), "unknown");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(
        audited[0]["reason"]
            .as_str()
            .unwrap()
            .contains("require_registered_audiences"),
        "{audited:?}"
    );

    // Off (the default): the same request is granted.
    let lenient = TestBroker::start_on_manual_clock(|_| {}).await;
    let (_, svid) = lenient.enrolled("/api", &["known", "unknown"]).await;
    lenient.mint(&svid, "unknown", 0).await.unwrap();
}

#[tokio::test]
async fn governance_claims_are_in_jwt_svids_only_when_configured() {
    let on = TestBroker::start_on_manual_clock(|config| config.jwt_governance_claims = true).await;
    let off = TestBroker::start_on_manual_clock(|_| {}).await;
    for (broker, expected) in [(&on, true), (&off, false)] {
        let (_, svid) = broker.enrolled("/billing/api", &["ledger"]).await;
        let minted = broker.mint(&svid, "ledger", 0).await.unwrap();
        let (status, jwks) = broker.http_get("/keys").await;
        assert_eq!(status, 200, "{jwks}");
        // jwt-simple, an independent JOSE implementation, verifies the
        // signature and reads every claim.
        let claims = common::jwt_simple_claims(&jwks, &minted.token, "ledger", None).unwrap();
        assert_eq!(claims["sub"], minted.spiffe_id, "{claims}");
        if expected {
            assert_eq!(claims["mayfly_env"], "test", "{claims}");
            assert_eq!(claims["mayfly_data_class"], "phi", "{claims}");
        } else {
            assert!(claims.get("mayfly_env").is_none(), "{claims}");
            assert!(claims.get("mayfly_data_class").is_none(), "{claims}");
        }
        // A reused (cached) token is the same one, claims and all.
        let again = broker.mint(&svid, "ledger", 0).await.unwrap();
        assert_eq!(again.token, minted.token);
    }
}

/// Runs the `mayfly` binary on `data_dir`'s admin socket.
fn mayfly(data_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mayfly"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("MAYFLY_DATA_DIR")
        .env_remove("MAYFLY_SERVER")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_updates_and_deletes_audiences() {
    let broker = TestBroker::start_on_manual_clock(|_| {}).await;
    let dir = broker.data_dir();
    let run = move |args: &'static [&'static str]| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || mayfly(&dir, args))
    };
    let created = run(&[
        "audience",
        "create",
        "billing-api",
        "--owner",
        "team-billing",
        "--environment",
        "prod",
        "--data-class",
        "confidential",
    ])
    .await
    .unwrap();
    assert!(created.status.success(), "{created:?}");
    let text = String::from_utf8(created.stdout).unwrap();
    assert!(text.contains("registered: audience billing-api"), "{text}");

    // A class outside the order: refused, naming the setting; no change.
    let refused = run(&[
        "audience",
        "create",
        "ledger",
        "--owner",
        "o",
        "--environment",
        "prod",
        "--data-class",
        "secret",
    ])
    .await
    .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(stderr.contains("data_classes"), "{stderr}");

    let updated = run(&["audience", "update", "billing-api", "--data-class", "phi"])
        .await
        .unwrap();
    assert!(updated.status.success(), "{updated:?}");
    let listed = run(&["audience", "list", "--json"]).await.unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["name"], "billing-api");
    assert_eq!(lines[0]["data_class"], "phi");
    assert_eq!(lines[0]["revision"], 2);

    let deleted = run(&["audience", "delete", "billing-api"]).await.unwrap();
    assert!(deleted.status.success(), "{deleted:?}");
    let again = run(&["audience", "delete", "billing-api"]).await.unwrap();
    assert!(!again.status.success(), "{again:?}");
    let table = run(&["audience", "list"]).await.unwrap();
    assert_eq!(
        String::from_utf8(table.stdout).unwrap(),
        "no audiences registered\n"
    );
}

/// A broker replica on the shared Redis store.
async fn replica(
    dir: &Path,
    name: &str,
    url: &str,
    prefix: &str,
    clock: Arc<dyn Clock>,
    root_from: Option<&Path>,
) -> (RunningServer, std::path::PathBuf) {
    let data = dir.join(name);
    if let Some(first) = root_from {
        mayfly_sdk::files::ensure_private_dir(&data).unwrap();
        mayfly_ca::export_active_root(&first.join("ca"), &data.join("ca")).unwrap();
    }
    let config = Config {
        store: StoreLocation::Redis {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        },
        ..common::test_config(data.clone())
    };
    let server = mayfly::server::start_with_clock(config, clock)
        .await
        .unwrap();
    (server, data)
}

/// Polls `attempt` every 10 ms for at most `limit` until it yields a value
/// (an upper bound for a change to reach the other replica, not a speed
/// check).
async fn eventually<T, F, Fut>(limit: Duration, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(value) = attempt().await {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn a_second_replica_enforces_an_audience_registered_on_the_first() {
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let guard = PrefixGuard::new(&url, "audiences");
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(SystemTime::now()));
    let (a, a_data) = replica(dir.path(), "a", &url, &guard.prefix, clock.clone(), None).await;
    let (b, b_data) = replica(dir.path(), "b", &url, &guard.prefix, clock, Some(&a_data)).await;
    let mut a_admin = mayfly_sdk::client::connect_admin(a.admin_socket())
        .await
        .unwrap();
    let b_url = format!("https://127.0.0.1:{}", b.grpc_addr().port());
    let b_bundle = std::fs::read(b_data.join("bundle.pem")).unwrap();
    let b_broker = || mayfly_sdk::client::connect_broker(&b_url, &b_bundle, None);

    let entry = a_admin
        .create_entry(pb::CreateEntryRequest {
            spec: Some(TestBroker::entry_spec("/api", &["ledger"], &[])),
        })
        .await
        .unwrap()
        .into_inner();
    let token = a_admin
        .create_join_token(pb::CreateJoinTokenRequest {
            entry_id: entry.id.clone(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    // B attests once it knows the entry (a join token is spent once).
    let b_admin = mayfly_sdk::client::connect_admin(b.admin_socket())
        .await
        .unwrap();
    let id = entry.id.clone();
    eventually(Duration::from_secs(5), || {
        let mut b_admin = b_admin.clone();
        let id = id.clone();
        async move { b_admin.get_entry(pb::GetEntryRequest { id }).await.ok() }
    })
    .await
    .expect("B learns of the entry made on A");
    let svid = common::attest_via(b_broker().await.unwrap(), &token)
        .await
        .unwrap();
    let b_as = || {
        mayfly_sdk::client::connect_broker(
            &b_url,
            &b_bundle,
            Some((svid.chain_pem.as_bytes(), svid.key_pem.as_bytes())),
        )
    };
    // Positive control: B mints for the audience while it is unregistered.
    common::mint_via(b_as().await.unwrap(), "ledger", 0)
        .await
        .unwrap();

    // Registered on A for another environment: B refuses it.
    register(&mut a_admin, "ledger", "prod", "none")
        .await
        .unwrap();
    let refused = eventually(Duration::from_secs(5), || async {
        common::mint_via(b_as().await.unwrap(), "ledger", 0)
            .await
            .err()
    })
    .await
    .expect("B enforces the audience registered on A");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("\"prod\""), "{refused:?}");
    assert_eq!(refused_mints(&b_data, "ledger").len(), 1);

    // Deleted on A: B mints again.
    a_admin
        .delete_audience(pb::DeleteAudienceRequest {
            name: "ledger".into(),
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(5), || async {
        common::mint_via(b_as().await.unwrap(), "ledger", 0)
            .await
            .ok()
    })
    .await
    .expect("B follows the deletion");
    b.shutdown().await;
    a.shutdown().await;
}
