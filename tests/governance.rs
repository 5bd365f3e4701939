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

// ---------------------------------------------------------------------------
// The sweeper, on the manual clock. `sweep_every` is a day (its maximum), so
// that the periodic task never runs during a test and a round is a day of
// the test's clock: the tests advance it by days between sweeps.

fn governance(
    configure: impl Fn(&mut mayfly::config::GovernanceConfig) + Send + Sync + 'static,
) -> impl Fn(&mut mayfly::config::Config) + Send + Sync + 'static {
    move |config| {
        config.governance.sweep_every = Duration::from_secs(DAY);
        configure(&mut config.governance);
    }
}

/// An entry at `path` that expires in a year (later than any test looks).
async fn long_lived(broker: &TestBroker, path: &str) -> pb::Entry {
    let mut spec = TestBroker::entry_spec(path, &["orders"], &[]);
    spec.expires_at = Some(broker.clock_dyn().unix_now() + (365 * DAY) as i64);
    broker.create_entry_from(spec).await.unwrap()
}

async fn sweep(broker: &TestBroker) -> Vec<mayfly::governance::Finding> {
    match broker.server().sweep_governance().await.unwrap() {
        mayfly::governance::SweepOutcome::Swept { findings, .. } => findings,
        other => panic!("a lone broker sweeps every round: {other:?}"),
    }
}

fn advance_days(broker: &TestBroker, days: u64) {
    broker.clock.advance(Duration::from_secs(days * DAY));
}

#[tokio::test]
async fn an_overdue_review_disables_by_policy_and_enable_brings_it_back() {
    use mayfly::config::GovernanceAction;
    let broker = TestBroker::start_on_manual_clock(governance(|g| {
        g.on_review_overdue = GovernanceAction::Disable;
    }))
    .await;
    let entry = long_lived(&broker, "/billing/api").await;
    // Active: nothing to do, and it attests.
    assert_eq!(sweep(&broker).await, vec![]);
    broker
        .attest(&broker.join_token(&entry.id, 0).await)
        .await
        .unwrap();

    // Review overdue: the sweep disables it, naming the rule and the dates.
    advance_days(&broker, 91);
    let token = broker.join_token(&entry.id, 0).await;
    let findings = sweep(&broker).await;
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].rule, mayfly::governance::Rule::ReviewOverdue);
    let disabled = show(&broker, &entry.id).await.disabled.unwrap();
    assert_eq!(disabled.by, "mayfly-governance");
    assert!(
        disabled.reason.starts_with("owner review overdue since "),
        "{}",
        disabled.reason
    );
    assert!(
        disabled
            .reason
            .contains("never reviewed since its creation"),
        "{}",
        disabled.reason
    );
    let refused = broker.attest(&token).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("owner review overdue since"),
        "{refused:?}"
    );
    assert!(
        refused.message().contains("mayfly entry enable"),
        "{refused:?}"
    );
    let disables = records(&broker, "entry.disable");
    assert_eq!(disables.len(), 1, "{disables:?}");
    assert_eq!(disables[0]["actor"], "mayfly-governance");
    assert_eq!(disables[0]["detail"]["rule"], "review_overdue");
    // A disabled entry is not looked at again.
    advance_days(&broker, 1);
    assert_eq!(sweep(&broker).await, vec![]);

    // Enabled and reviewed: active again, and the sweep leaves it alone.
    enable(&broker, &entry.id, "owner reviewed it")
        .await
        .unwrap();
    review(&broker, &entry.id, "still needed").await.unwrap();
    advance_days(&broker, 1);
    assert_eq!(sweep(&broker).await, vec![]);
    broker
        .attest(&broker.join_token(&entry.id, 0).await)
        .await
        .unwrap();
    assert_eq!(records(&broker, "entry.enable").len(), 1);
    assert_eq!(records(&broker, "entry.disable").len(), 1);
}

#[tokio::test]
async fn a_dormant_entry_is_disabled_and_one_in_use_is_not() {
    use mayfly::config::GovernanceAction;
    let broker = TestBroker::start_on_manual_clock(governance(|g| {
        g.dormant_after = Some(Duration::from_secs(30 * DAY));
        g.on_dormant = GovernanceAction::Disable;
    }))
    .await;
    let never_used = long_lived(&broker, "/never").await;
    let used_once = long_lived(&broker, "/once").await;
    let in_use = long_lived(&broker, "/busy").await;
    let minted_at = broker.clock_dyn().unix_now();
    broker
        .attest(&broker.join_token(&used_once.id, 0).await)
        .await
        .unwrap();
    advance_days(&broker, 29);
    assert_eq!(sweep(&broker).await, vec![], "not dormant yet");
    broker
        .attest(&broker.join_token(&in_use.id, 0).await)
        .await
        .unwrap();
    advance_days(&broker, 2);
    let mut disabled: Vec<_> = sweep(&broker)
        .await
        .into_iter()
        .map(|f| (f.entry_id, f.rule))
        .collect();
    disabled.sort();
    let mut expected = vec![
        (never_used.id.clone(), mayfly::governance::Rule::Dormant),
        (used_once.id.clone(), mayfly::governance::Rule::Dormant),
    ];
    expected.sort();
    assert_eq!(disabled, expected);
    let reason = show(&broker, &never_used.id).await.disabled.unwrap().reason;
    assert!(
        reason.contains("never minted since its creation at"),
        "{reason}"
    );
    assert!(reason.contains("dormant_after = 30d"), "{reason}");
    let reason = show(&broker, &used_once.id).await.disabled.unwrap().reason;
    assert!(
        reason.contains(&format!(
            "last minted at {}",
            mayfly::clock::rfc3339(minted_at)
        )),
        "{reason}"
    );
    // Positive control: the entry used two days ago is still active.
    assert!(show(&broker, &in_use.id).await.disabled.is_none());
    assert_eq!(records(&broker, "entry.disable").len(), 2);
}

#[tokio::test]
async fn a_report_is_made_once_per_entry_and_state_and_disables_nothing() {
    let broker = TestBroker::start_on_manual_clock(governance(|_| {})).await;
    let entry = long_lived(&broker, "/reports").await;
    advance_days(&broker, 91);
    let first = sweep(&broker).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].action, mayfly::config::GovernanceAction::Report);
    advance_days(&broker, 1);
    assert_eq!(sweep(&broker).await, vec![], "reported already");
    assert!(show(&broker, &entry.id).await.disabled.is_none());
    let reports = records(&broker, "governance.report");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["detail"]["rule"], "review_overdue");
    assert_eq!(reports[0]["actor"], "mayfly-governance");
    // A change of state (an expiry) is reported again.
    broker
        .update_entry(
            &entry.id,
            pb::EntrySpec {
                expires_at: Some(broker.clock_dyn().unix_now() + 3600),
                ..pb::EntrySpec::default()
            },
        )
        .await
        .unwrap();
    advance_days(&broker, 1);
    let expired = sweep(&broker).await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].rule, mayfly::governance::Rule::Expired);
    assert_eq!(records(&broker, "governance.report").len(), 2);
}

// ---------------------------------------------------------------------------
// Two replicas on the real Redis (MAYFLY_TEST_REDIS; skipped without one,
// except under CI=true, where that fails).

async fn replica(
    dir: &std::path::Path,
    name: &str,
    url: &str,
    prefix: &str,
    clock: std::sync::Arc<mayfly::clock::ManualClock>,
    root_from: Option<&std::path::Path>,
) -> mayfly::server::RunningServer {
    common::replica_on_clock(dir, name, url, prefix, clock, root_from, |config| {
        governance(|g| g.on_review_overdue = mayfly::config::GovernanceAction::Disable)(config);
    })
    .await
}

#[tokio::test]
async fn two_replicas_sweeping_the_same_round_disable_once() {
    use mayfly::governance::SweepOutcome;
    let Some(url) = common::redis::redis_url_or_skip() else {
        return;
    };
    let guard = common::redis::PrefixGuard::new(&url, "governance");
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(mayfly::clock::ManualClock::new(std::time::SystemTime::now()));
    let a = replica(dir.path(), "a", &url, &guard.prefix, clock.clone(), None).await;
    let b_dir = dir.path().join("a");
    let b = replica(
        dir.path(),
        "b",
        &url,
        &guard.prefix,
        clock.clone(),
        Some(&b_dir),
    )
    .await;

    let mut spec = TestBroker::entry_spec("/shared", &["orders"], &[]);
    spec.expires_at = Some(
        mayfly::clock::unix_seconds(mayfly::clock::Clock::now(clock.as_ref())) + (365 * DAY) as i64,
    );
    let entry = mayfly_sdk::client::connect_admin(a.admin_socket())
        .await
        .unwrap()
        .create_entry(pb::CreateEntryRequest { spec: Some(spec) })
        .await
        .unwrap()
        .into_inner();
    // Replica b learns of it through the change feed.
    let mut b_admin = mayfly_sdk::client::connect_admin(b.admin_socket())
        .await
        .unwrap();
    let mut known = false;
    for _ in 0..100 {
        let found = b_admin
            .get_entry(pb::GetEntryRequest {
                id: entry.id.clone(),
            })
            .await;
        if found.is_ok() {
            known = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(known, "replica b never heard of the entry");

    clock.advance(Duration::from_secs(91 * DAY));
    let (on_a, on_b) = tokio::join!(a.sweep_governance(), b.sweep_governance());
    let outcomes = [on_a.unwrap(), on_b.unwrap()];
    let swept: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            SweepOutcome::Swept { findings, .. } => Some(findings.len()),
            SweepOutcome::Skipped { .. } => None,
        })
        .collect();
    assert_eq!(
        swept,
        vec![1],
        "exactly one replica swept the round: {outcomes:?}"
    );
    let data = |server: &mayfly::server::RunningServer| server.config().data_dir.clone();
    let disables = common::audit_records(&data(&a), "entry.disable").len()
        + common::audit_records(&data(&b), "entry.disable").len();
    assert_eq!(disables, 1, "exactly one disable record");

    // The next round is swept by one replica again, and finds nothing new.
    clock.advance(Duration::from_secs(DAY));
    let (on_a, on_b) = tokio::join!(a.sweep_governance(), b.sweep_governance());
    let outcomes = [on_a.unwrap(), on_b.unwrap()];
    let swept: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            SweepOutcome::Swept { findings, .. } => Some(findings.len()),
            SweepOutcome::Skipped { .. } => None,
        })
        .collect();
    assert_eq!(swept, vec![0], "{outcomes:?}");
    a.shutdown().await;
    b.shutdown().await;
}

async fn purge(
    broker: &TestBroker,
    expired_for_days: u64,
    confirm: bool,
) -> Result<pb::PurgeEntriesResponse, tonic::Status> {
    broker
        .admin()
        .await
        .purge_entries(pb::PurgeEntriesRequest {
            expired_for_seconds: expired_for_days * DAY,
            confirm,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn purge_lists_by_default_and_deletes_long_expired_entries_with_confirm() {
    let broker = TestBroker::start_on_manual_clock(governance(|_| {})).await;
    let expiring = |path: &'static str, in_days: u64| {
        let broker = &broker;
        async move {
            let mut spec = TestBroker::entry_spec(path, &["orders"], &[]);
            spec.expires_at = Some(broker.clock_dyn().unix_now() + (in_days * DAY) as i64);
            broker.create_entry_from(spec).await.unwrap()
        }
    };
    let long_gone = expiring("/long-gone", 1).await;
    let recent = expiring("/recent", 90).await;
    let active = long_lived(&broker, "/active").await;
    advance_days(&broker, 100);

    let listed = purge(&broker, 90, false).await.unwrap();
    assert!(!listed.deleted);
    let ids: Vec<_> = listed.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec![long_gone.id.as_str()], "expired 99 days ago only");
    assert!(
        records(&broker, "entry.purge").is_empty(),
        "a dry run changes nothing"
    );
    show(&broker, &long_gone.id).await;

    let purged = purge(&broker, 90, true).await.unwrap();
    assert!(purged.deleted);
    assert_eq!(purged.entries.len(), 1);
    let gone = broker
        .admin()
        .await
        .get_entry(pb::GetEntryRequest {
            id: long_gone.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    // Positive controls: the recently expired and the active entry stay.
    show(&broker, &recent.id).await;
    show(&broker, &active.id).await;
    let purges = records(&broker, "entry.purge");
    assert_eq!(purges.len(), 1, "{purges:?}");
    assert_eq!(purges[0]["entry_id"], long_gone.id.as_str());
    assert!(
        purges[0]["reason"]
            .as_str()
            .unwrap()
            .contains("more than 90d ago")
    );
    // A threshold under a day is refused.
    let refused = purge(&broker, 0, true).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
}
