//! Entry lifecycle governance against a real broker on a clock the test
//! controls: disabling and enabling an entry (refused mints that name the
//! reason and the way back, a cached JWT-SVID never handed out for a
//! disabled entry, an audit record per transition). Every refusal runs next
//! to a positive control that the same request succeeds when allowed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Svid, TestBroker};
use mayfly_sdk::proto::v1 as pb;
use tonic::Code;

/// Every audit record with `action`, in order.
fn records(broker: &TestBroker, action: &str) -> Vec<serde_json::Value> {
    common::read_audit(&broker.data_dir())
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["action"] == action)
        .collect()
}

async fn disable(broker: &TestBroker, id: &str, reason: &str) -> Result<pb::Entry, tonic::Status> {
    broker
        .admin()
        .await
        .disable_entry(pb::DisableEntryRequest {
            id: id.into(),
            reason: reason.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn enable(broker: &TestBroker, id: &str, reason: &str) -> Result<pb::Entry, tonic::Status> {
    broker
        .admin()
        .await
        .enable_entry(pb::EnableEntryRequest {
            id: id.into(),
            reason: reason.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn renew(broker: &TestBroker, svid: &Svid) -> Result<Svid, tonic::Status> {
    broker.renew(svid).await
}

#[tokio::test]
async fn a_disabled_entry_mints_nothing_and_says_why_until_enabled() {
    let broker = TestBroker::start().await;
    let (entry, svid) = broker.enrolled("/billing/api", &["orders"]).await;

    // Positive control: the entry mints, twice (the second from the cache).
    let first = broker.mint(&svid, "orders", 0).await.unwrap();
    let again = broker.mint(&svid, "orders", 0).await.unwrap();
    assert_eq!(again.jti, first.jti, "the second token came from the cache");

    let disabled = disable(&broker, &entry.id, "owner left; pending review")
        .await
        .unwrap();
    assert_eq!(disabled.revision, entry.revision + 1);
    let state = disabled
        .disabled
        .clone()
        .expect("disabled state on the wire");
    assert_eq!(state.reason, "owner left; pending review");
    assert!(state.by.starts_with("admin"), "{}", state.by);
    assert_eq!(state.at, broker.clock_dyn().unix_now());

    // The cached token is not handed out; the refusal names who, why and
    // the way back.
    let refused = broker.mint(&svid, "orders", 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains(&format!("entry {} is disabled since", entry.id)),
        "{message}"
    );
    assert!(message.contains("owner left; pending review"), "{message}");
    assert!(
        message.contains(&format!("mayfly entry enable {} --reason", entry.id)),
        "{message}"
    );
    // X509-SVIDs too.
    let refused = renew(&broker, &svid).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("is disabled since"),
        "{refused:?}"
    );
    // And no join token for it.
    let token = broker
        .admin()
        .await
        .create_join_token(pb::CreateJoinTokenRequest {
            entry_id: entry.id.clone(),
            ttl_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(token.code(), Code::FailedPrecondition, "{token:?}");

    // Disabling twice is refused and changes nothing.
    let twice = disable(&broker, &entry.id, "again").await.unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition, "{twice:?}");

    let enabled = enable(&broker, &entry.id, "owner confirmed, CHG-1234")
        .await
        .unwrap();
    assert!(enabled.disabled.is_none());
    assert_eq!(enabled.revision, entry.revision + 2);
    broker.mint(&svid, "orders", 0).await.unwrap();
    renew(&broker, &svid).await.unwrap();
    let twice = enable(&broker, &entry.id, "again").await.unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition, "{twice:?}");

    // One audit record per transition, naming the entry, the actor and why.
    let disables = records(&broker, "entry.disable");
    assert_eq!(disables.len(), 1, "{disables:?}");
    assert_eq!(disables[0]["entry_id"], entry.id.as_str());
    assert_eq!(disables[0]["reason"], "owner left; pending review");
    assert!(disables[0]["actor"].as_str().unwrap().starts_with("admin"));
    let enables = records(&broker, "entry.enable");
    assert_eq!(enables.len(), 1, "{enables:?}");
    assert_eq!(enables[0]["reason"], "owner confirmed, CHG-1234");
    assert_eq!(
        enables[0]["detail"]["was_disabled"]["reason"],
        "owner left; pending review"
    );
    // The refused mint is audited with its reason.
    let refused_mints: Vec<_> = records(&broker, "jwt.mint")
        .into_iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused_mints.len(), 1, "{refused_mints:?}");
    assert!(
        refused_mints[0]["reason"]
            .as_str()
            .unwrap()
            .contains("is disabled since")
    );
}

#[tokio::test]
async fn a_disable_or_enable_needs_a_bounded_reason() {
    let broker = TestBroker::start().await;
    let entry = broker.create_entry("/reports", &["orders"]).await;
    for reason in ["", "   ", &"x".repeat(1025), "two\nlines"] {
        let refused = disable(&broker, &entry.id, reason).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{reason:?}: {refused:?}"
        );
        assert!(refused.message().contains("reason"), "{refused:?}");
    }
    let unknown = disable(&broker, "0123456789abcdef", "x").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    // Positive control: a reason of the largest size is taken.
    disable(&broker, &entry.id, &"x".repeat(1024))
        .await
        .unwrap();
    let refused = enable(&broker, &entry.id, "").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    enable(&broker, &entry.id, "fine").await.unwrap();
}

#[tokio::test]
async fn a_disabled_state_survives_a_restart() {
    let mut broker = TestBroker::start().await;
    let (entry, svid) = broker.enrolled("/batch", &["orders"]).await;
    disable(&broker, &entry.id, "quarantined").await.unwrap();
    broker.restart().await;
    let shown = broker
        .admin()
        .await
        .get_entry(pb::GetEntryRequest {
            id: entry.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.disabled.unwrap().reason, "quarantined");
    let refused = broker.mint(&svid, "orders", 0).await.unwrap_err();
    assert!(refused.message().contains("quarantined"), "{refused:?}");
}

async fn review(broker: &TestBroker, id: &str, note: &str) -> Result<pb::Entry, tonic::Status> {
    broker
        .admin()
        .await
        .review_entry(pb::ReviewEntryRequest {
            id: id.into(),
            note: note.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn show(broker: &TestBroker, id: &str) -> pb::Entry {
    broker
        .admin()
        .await
        .get_entry(pb::GetEntryRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

const DAY: u64 = 86_400;

#[tokio::test]
async fn a_review_is_due_one_interval_after_creation_or_the_last_review() {
    let broker = TestBroker::start().await;
    let entry = broker.create_entry("/billing/api", &["orders"]).await;
    // The server default, 90 days, from creation.
    assert_eq!(entry.review_every_seconds, 90 * DAY);
    assert_eq!(entry.review_due_at, entry.created_at + (90 * DAY) as i64);
    assert!(entry.last_review.is_none());

    broker.clock.advance(Duration::from_secs(91 * DAY));
    let now = broker.clock_dyn().unix_now();
    assert!(
        show(&broker, &entry.id).await.review_due_at <= now,
        "overdue"
    );

    let reviewed = review(&broker, &entry.id, "still needed; scope ok")
        .await
        .unwrap();
    let last = reviewed.last_review.clone().unwrap();
    assert_eq!(
        (last.at, last.note.as_str()),
        (now, "still needed; scope ok")
    );
    assert!(last.by.starts_with("admin"), "{}", last.by);
    assert_eq!(reviewed.review_due_at, now + (90 * DAY) as i64);
    assert_eq!(reviewed.revision, entry.revision + 1);

    let records = records(&broker, "entry.review");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["entry_id"], entry.id.as_str());
    assert_eq!(records[0]["detail"]["note"], "still needed; scope ok");
    assert_eq!(records[0]["detail"]["was_due_at"], entry.review_due_at);

    // A note is required; the entry's own interval wins; 0 turns reviews off.
    let refused = review(&broker, &entry.id, " ").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let monthly = broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                review_every_seconds: Some(30 * DAY),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(monthly.review_due_at, now + (30 * DAY) as i64);
    let never = broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                review_every_seconds: Some(0),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((never.review_every_seconds, never.review_due_at), (0, 0));
    let too_long = broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                review_every_seconds: Some(11 * 365 * DAY),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument, "{too_long:?}");
}
