//! The Redis store against a real Redis: the embedded store's contract,
//! checked across two connections as two replicas would hold them, plus the
//! change feed (snapshot, changes, heartbeats, resync) and recovery from an
//! outage.
//!
//! Needs Redis at `MAYFLY_TEST_REDIS` (default `redis://127.0.0.1:6379`)
//! and the `redis-server` binary; without them the tests are skipped, or
//! fail under `CI=true`. Each test works under its own key prefix and
//! deletes its keys when done.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Only the Redis helpers: not the broker helpers of `common`.
#[path = "common/redis.rs"]
mod redis_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mayfly::attest::join_token::{JoinTokenRecord, JoinTokenSecret};
use mayfly::policy::{Entry, EntrySpec, TtlPolicy};
use mayfly::store::{
    RedeemError, RedisStore, ReplicaRecord, Store, StoreError, StoreEvent, UsageRecord,
};
use mayfly_sdk::TrustDomain;
use mayfly_sdk::revocation::{Revocation, RevocationKind};
use redis_support::{PrefixGuard, TestRedis, free_port, redis_url_or_skip};
use tokio::sync::mpsc::Receiver;

const NOW: i64 = 1_700_000_000;
/// The longest wait for an expected event: an upper bound, not a speed check.
const WAIT: Duration = Duration::from_secs(5);
/// A short poll interval, so tests that wait for a poll wait less.
const POLL: Duration = Duration::from_millis(100);

/// Two connections to one Redis under one fresh prefix: two replicas.
struct Replicas {
    a: RedisStore,
    b: RedisStore,
    keys: PrefixGuard,
}

impl Replicas {
    /// `None` when the test is skipped (no Redis, not in CI).
    async fn connect(test: &str) -> Option<Replicas> {
        let url = redis_url_or_skip()?;
        let keys = PrefixGuard::new(&url, test);
        let a = RedisStore::connect(&url, &keys.prefix).await.unwrap();
        let b = RedisStore::connect(&url, &keys.prefix)
            .await
            .unwrap()
            .with_poll_interval(POLL);
        Some(Replicas { a, b, keys })
    }

    /// A plain connection, to write behind the store's back.
    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.keys.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.keys.prefix)
    }
}

fn entry(path: &str) -> Entry {
    EntrySpec {
        spiffe_id: Some(format!("spiffe://example.org/{path}")),
        audiences: Some(vec!["payments".into()]),
        owner: Some("team@example.org".into()),
        purpose: Some("tests".into()),
        ..EntrySpec::default()
    }
    .create(
        &TrustDomain::new("example.org").unwrap(),
        &TtlPolicy::default(),
        NOW,
    )
    .unwrap()
}

fn changed(entry: &Entry, path: &str) -> Entry {
    let mut next = entry.clone();
    next.spiffe_id = format!("spiffe://example.org/{path}").parse().unwrap();
    next.revision = entry.revision + 1;
    next
}

fn token_for(entry: &Entry, expires_at: i64) -> (JoinTokenSecret, JoinTokenRecord) {
    let secret = JoinTokenSecret::generate();
    let record = JoinTokenRecord {
        hash: secret.hash(),
        entry_id: entry.id.clone(),
        created_at: NOW,
        expires_at,
        created_by: "operator".into(),
        used_at: None,
    };
    (secret, record)
}

fn jti(value: &str, expires_at: Option<i64>) -> Revocation {
    Revocation::new(RevocationKind::Jti, value, NOW, expires_at).unwrap()
}

fn replica(id: &str, keep_until: i64) -> ReplicaRecord {
    ReplicaRecord {
        replica_id: id.to_owned(),
        jwks: r#"{"keys":[]}"#.to_owned(),
        published_at: NOW,
        keep_until,
    }
}

fn sorted_by_id(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    entries
}

/// The next event that `wanted` accepts, skipping others; panics after
/// [`WAIT`].
async fn wait_for(
    feed: &mut Receiver<StoreEvent>,
    what: &str,
    wanted: impl Fn(&StoreEvent) -> bool,
) -> StoreEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, feed.recv()).await {
            Ok(Some(event)) if wanted(&event) => return event,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the feed ended while waiting for {what}"),
            Err(_) => panic!("no {what} within {WAIT:?}"),
        }
    }
}

async fn wait_for_snapshot(feed: &mut Receiver<StoreEvent>) -> (Vec<Entry>, Vec<Revocation>) {
    match wait_for(feed, "a snapshot", |e| {
        matches!(e, StoreEvent::Snapshot { .. })
    })
    .await
    {
        StoreEvent::Snapshot {
            entries,
            revocations,
        } => (entries, revocations),
        _ => unreachable!(),
    }
}

async fn wait_for_heard(feed: &mut Receiver<StoreEvent>) -> i64 {
    match wait_for(feed, "a heartbeat", |e| matches!(e, StoreEvent::Heard(_))).await {
        StoreEvent::Heard(at) => at,
        _ => unreachable!(),
    }
}

/// Skips heartbeats only: the next real event.
async fn next_change(feed: &mut Receiver<StoreEvent>) -> StoreEvent {
    wait_for(feed, "a change", |e| !matches!(e, StoreEvent::Heard(_))).await
}

// ---------------------------------------------------------------------------
// Entries

#[tokio::test]
async fn entry_crud_round_trip() {
    let Some(replicas) = Replicas::connect("entry_crud").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let first = entry("billing/api");
    let second = entry("billing/worker");
    a.create_entry(&first).await.unwrap();
    b.create_entry(&second).await.unwrap();
    assert_eq!(b.entry(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(
        a.list_entries().await.unwrap(),
        sorted_by_id(vec![first.clone(), second.clone()]),
        "in id order"
    );

    let updated = changed(&first, "billing/api-v2");
    b.update_entry(&updated, first.revision).await.unwrap();
    assert_eq!(a.entry(&first.id).await.unwrap(), Some(updated.clone()));
    // The old SPIFFE ID is free again, the new one is taken.
    a.create_entry(&entry("billing/api")).await.unwrap();
    assert!(matches!(
        a.create_entry(&entry("billing/api-v2")).await,
        Err(StoreError::Conflict { .. })
    ));

    assert_eq!(a.delete_entry(&second.id).await.unwrap(), second);
    assert_eq!(b.entry(&second.id).await.unwrap(), None);
    assert_eq!(a.entry(&second.id).await.unwrap(), None);
}

#[tokio::test]
async fn entry_writes_refuse_duplicates_and_stale_revisions() {
    let Some(replicas) = Replicas::connect("entry_conflicts").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let original = entry("billing/api");
    a.create_entry(&original).await.unwrap();

    // Same id, or same SPIFFE ID, from the other replica.
    let mut same_id = entry("billing/other");
    same_id.id = original.id.clone();
    assert!(matches!(
        b.create_entry(&same_id).await,
        Err(StoreError::Conflict { .. })
    ));
    match b.create_entry(&entry("billing/api")).await {
        Err(StoreError::Conflict { reason }) => {
            assert!(reason.contains(original.id.as_str()), "{reason}");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }

    // Two writers hold revision 1: the first wins, the second is refused.
    let by_a = changed(&original, "billing/api-a");
    let by_b = changed(&original, "billing/api-b");
    a.update_entry(&by_a, original.revision).await.unwrap();
    assert!(matches!(
        b.update_entry(&by_b, original.revision).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(b.entry(&original.id).await.unwrap(), Some(by_a.clone()));

    // A revision that does not go up is our bug, not a conflict.
    let mut flat = by_a.clone();
    flat.owner = "someone@example.org".into();
    assert!(matches!(
        a.update_entry(&flat, by_a.revision).await,
        Err(StoreError::Internal { .. })
    ));

    // Taking another entry's SPIFFE ID is a conflict.
    let other = entry("billing/worker");
    a.create_entry(&other).await.unwrap();
    assert!(matches!(
        a.update_entry(&changed(&by_a, "billing/worker"), by_a.revision)
            .await,
        Err(StoreError::Conflict { .. })
    ));

    // Absent entries.
    let absent = entry("billing/absent");
    assert!(matches!(
        a.update_entry(&changed(&absent, "billing/absent2"), absent.revision)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        a.delete_entry(&absent.id).await,
        Err(StoreError::NotFound { .. })
    ));
    // Positive control: the refused writes changed nothing.
    assert_eq!(
        a.list_entries().await.unwrap(),
        sorted_by_id(vec![by_a.clone(), other.clone()])
    );
    assert_eq!(b.delete_entry(&by_a.id).await.unwrap(), by_a);
    assert!(matches!(
        a.delete_entry(&by_a.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn stored_garbage_is_reported_as_corrupt() {
    let Some(replicas) = Replicas::connect("corrupt").await else {
        return;
    };
    let good = entry("billing/api");
    replicas.a.create_entry(&good).await.unwrap();
    assert!(replicas.a.list_entries().await.is_ok());
    redis::cmd("HSET")
        .arg(replicas.key("entries"))
        .arg("0123456789abcdef")
        .arg("{not json")
        .exec_async(&mut replicas.raw().await)
        .await
        .unwrap();
    assert!(matches!(
        replicas.a.list_entries().await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        replicas
            .b
            .entry(&mayfly::policy::EntryId::parse("0123456789abcdef").unwrap())
            .await,
        Err(StoreError::Corrupt { .. })
    ));
}

// ---------------------------------------------------------------------------
// Join tokens

#[tokio::test]
async fn join_token_redeems_once_then_reports_reuse() {
    let Some(replicas) = Replicas::connect("join_token_reuse").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let node = entry("node/1");
    a.create_entry(&node).await.unwrap();
    let (secret, record) = token_for(&node, NOW + 600);
    a.insert_join_token(&record).await.unwrap();

    let redeemed = b.redeem_join_token(&secret.hash(), NOW + 10).await.unwrap();
    assert_eq!(redeemed.entry_id, node.id);
    assert_eq!(redeemed.used_at, Some(NOW + 10));
    assert_eq!(
        a.redeem_join_token(&secret.hash(), NOW + 20).await,
        Err(RedeemError::AlreadyUsed { used_at: NOW + 10 })
    );
    // Reuse is still reported as reuse after expiry.
    assert_eq!(
        b.redeem_join_token(&secret.hash(), NOW + 700).await,
        Err(RedeemError::AlreadyUsed { used_at: NOW + 10 })
    );
}

#[tokio::test]
async fn expired_and_unknown_join_tokens_are_refused() {
    let Some(replicas) = Replicas::connect("join_token_refused").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let node = entry("node/1");
    a.create_entry(&node).await.unwrap();
    let (expired, expired_record) = token_for(&node, NOW + 600);
    let (fresh, fresh_record) = token_for(&node, NOW + 600);
    a.insert_join_token(&expired_record).await.unwrap();
    a.insert_join_token(&fresh_record).await.unwrap();

    assert_eq!(
        b.redeem_join_token(&expired.hash(), NOW + 600).await,
        Err(RedeemError::Expired {
            expired_at: NOW + 600
        })
    );
    // Refusal changed nothing: still expired, not used.
    assert_eq!(
        a.redeem_join_token(&expired.hash(), NOW + 601).await,
        Err(RedeemError::Expired {
            expired_at: NOW + 600
        })
    );
    assert_eq!(
        a.redeem_join_token(&JoinTokenSecret::generate().hash(), NOW)
            .await,
        Err(RedeemError::Unknown)
    );
    // Positive control: one second earlier it is valid.
    assert!(b.redeem_join_token(&fresh.hash(), NOW + 599).await.is_ok());
}

#[tokio::test]
async fn join_token_needs_a_registered_entry_and_a_fresh_hash() {
    let Some(replicas) = Replicas::connect("join_token_insert").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let node = entry("node/1");
    let (_, record) = token_for(&node, NOW + 600);
    assert!(matches!(
        a.insert_join_token(&record).await,
        Err(StoreError::NotFound { .. })
    ));
    a.create_entry(&node).await.unwrap();
    a.insert_join_token(&record).await.unwrap();
    assert!(matches!(
        b.insert_join_token(&record).await,
        Err(StoreError::Conflict { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_on_two_replicas_yield_exactly_one_success() {
    let Some(replicas) = Replicas::connect("join_token_race").await else {
        return;
    };
    let node = entry("node/1");
    replicas.a.create_entry(&node).await.unwrap();
    let (secret, record) = token_for(&node, NOW + 600);
    replicas.a.insert_join_token(&record).await.unwrap();

    let stores = [Arc::new(replicas.a.clone()), Arc::new(replicas.b.clone())];
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let start = Arc::clone(&start);
            let hash = secret.hash();
            tokio::spawn(async move {
                start.wait().await;
                store.redeem_join_token(&hash, NOW + 1).await
            })
        })
        .collect();
    let (mut successes, mut reuses) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(redeemed) => {
                assert_eq!(redeemed.used_at, Some(NOW + 1));
                successes += 1;
            }
            Err(RedeemError::AlreadyUsed { used_at }) => {
                assert_eq!(used_at, NOW + 1);
                reuses += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((successes, reuses), (1, 15));
}

#[tokio::test]
async fn prune_removes_only_expired_tokens() {
    let Some(replicas) = Replicas::connect("join_token_prune").await else {
        return;
    };
    let store = &replicas.a;
    let node = entry("node/1");
    store.create_entry(&node).await.unwrap();
    let (old_unused, record) = token_for(&node, NOW + 100);
    store.insert_join_token(&record).await.unwrap();
    let (old_used, record) = token_for(&node, NOW + 100);
    store.insert_join_token(&record).await.unwrap();
    store
        .redeem_join_token(&old_used.hash(), NOW)
        .await
        .unwrap();
    let (at_boundary, record) = token_for(&node, NOW + 200);
    store.insert_join_token(&record).await.unwrap();
    let (live, record) = token_for(&node, NOW + 300);
    store.insert_join_token(&record).await.unwrap();

    assert_eq!(replicas.b.prune_join_tokens(NOW + 200).await.unwrap(), 2);
    for pruned in [&old_unused, &old_used] {
        assert_eq!(
            store.redeem_join_token(&pruned.hash(), NOW).await,
            Err(RedeemError::Unknown)
        );
    }
    assert!(
        store
            .redeem_join_token(&at_boundary.hash(), NOW)
            .await
            .is_ok()
    );
    assert!(store.redeem_join_token(&live.hash(), NOW).await.is_ok());
    assert_eq!(store.prune_join_tokens(NOW + 200).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------
// One-time keys and challenges

#[tokio::test]
async fn one_time_keys_are_accepted_once_across_replicas() {
    let Some(replicas) = Replicas::connect("use_once").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    // Real times, so that Redis keeps the records for the whole test.
    let now = unix_now();
    assert!(a.use_once("oidc:gh:jti:1", now + 100, now).await.unwrap());
    assert!(
        !b.use_once("oidc:gh:jti:1", now + 100, now + 50)
            .await
            .unwrap(),
        "replay on the other replica"
    );
    assert!(
        !a.use_once("oidc:gh:jti:1", now + 100, now + 100)
            .await
            .unwrap(),
        "replay until expiry, inclusive"
    );
    assert!(
        b.use_once("oidc:gh:jti:2", now + 100, now + 50)
            .await
            .unwrap(),
        "another key"
    );
    // After expiry the key may be used again, and is then guarded again.
    assert!(
        b.use_once("oidc:gh:jti:1", now + 300, now + 101)
            .await
            .unwrap()
    );
    assert!(
        !a.use_once("oidc:gh:jti:1", now + 300, now + 102)
            .await
            .unwrap()
    );
    // Redis forgets them by itself.
    assert_eq!(a.prune_one_time(now + 400).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_use_once_across_replicas_yields_exactly_one_success() {
    let Some(replicas) = Replicas::connect("use_once_race").await else {
        return;
    };
    let now = unix_now();
    let stores = [Arc::new(replicas.a.clone()), Arc::new(replicas.b.clone())];
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            tokio::spawn(async move { store.use_once("k8s:c:jti:x", now + 100, now).await })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap().unwrap());
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn challenges_are_taken_once() {
    let Some(replicas) = Replicas::connect("challenges").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let expires_at = unix_now() + 100;
    a.insert_challenge("c1", b"nonce", expires_at)
        .await
        .unwrap();
    assert!(matches!(
        b.insert_challenge("c1", b"other", expires_at).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        b.take_challenge("c1").await.unwrap(),
        Some((b"nonce".to_vec(), expires_at))
    );
    assert_eq!(a.take_challenge("c1").await.unwrap(), None, "single use");
    assert_eq!(a.take_challenge("unknown").await.unwrap(), None);
    // Binary nonces survive.
    let nonce = [0u8, 255, 10, 13, 0];
    b.insert_challenge("c2", &nonce, expires_at).await.unwrap();
    assert_eq!(
        a.take_challenge("c2").await.unwrap(),
        Some((nonce.to_vec(), expires_at))
    );
}

// ---------------------------------------------------------------------------
// Usage

#[tokio::test]
async fn usage_counts_add_up_across_replicas_and_the_latest_time_wins() {
    let Some(replicas) = Replicas::connect("usage").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let api = entry("billing/api");
    let worker = entry("billing/worker");
    a.create_entry(&api).await.unwrap();
    a.create_entry(&worker).await.unwrap();
    assert_eq!(b.usage().await.unwrap(), vec![]);

    let record = |entry: &Entry, last_minted_at, mint_count| UsageRecord {
        entry_id: entry.id.clone(),
        last_minted_at,
        mint_count,
    };
    a.record_usage(&[record(&api, NOW + 10, 3), record(&worker, NOW + 5, 1)])
        .await
        .unwrap();
    // Replica B's mints add to A's; the later time wins even if a batch
    // arrives late.
    b.record_usage(&[record(&api, NOW + 8, 5)]).await.unwrap();
    b.record_usage(&[]).await.unwrap();

    let mut expected = vec![record(&api, NOW + 10, 8), record(&worker, NOW + 5, 1)];
    expected.sort_by(|x, y| x.entry_id.cmp(&y.entry_id));
    assert_eq!(a.usage().await.unwrap(), expected, "in entry id order");

    // Deleting an entry drops its usage, and a late batch does not bring
    // it back; a batch for unregistered entries changes nothing else.
    b.delete_entry(&api.id).await.unwrap();
    a.record_usage(&[record(&api, NOW + 20, 6), record(&entry("ghost"), NOW, 1)])
        .await
        .unwrap();
    assert_eq!(a.usage().await.unwrap(), vec![record(&worker, NOW + 5, 1)]);
}

// ---------------------------------------------------------------------------
// Revocations and replicas

#[tokio::test]
async fn revocations_round_trip_and_prune() {
    let Some(replicas) = Replicas::connect("revocations").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let expired = jti("expired", Some(NOW));
    let live = jti("live", Some(NOW + 100));
    let lifted_later = Revocation::new(
        RevocationKind::SpiffeId,
        "spiffe://example.org/billing",
        NOW,
        None,
    )
    .unwrap();
    for revocation in [&expired, &live, &lifted_later] {
        a.put_revocation(revocation).await.unwrap();
    }
    let mut expected = vec![expired.clone(), live.clone(), lifted_later.clone()];
    expected.sort_by_key(Revocation::key);
    assert_eq!(
        b.list_revocations().await.unwrap(),
        expected,
        "in key order"
    );

    // Putting again replaces.
    let mut longer = live.clone();
    longer.expires_at = Some(NOW + 500);
    longer.reason = "still compromised".into();
    b.put_revocation(&longer).await.unwrap();
    assert!(a.list_revocations().await.unwrap().contains(&longer));

    assert_eq!(b.prune_revocations(NOW).await.unwrap(), vec![expired.key()]);
    assert_eq!(
        b.prune_revocations(NOW).await.unwrap(),
        Vec::<String>::new()
    );
    let mut left = vec![longer.clone(), lifted_later.clone()];
    left.sort_by_key(Revocation::key);
    assert_eq!(a.list_revocations().await.unwrap(), left);

    assert!(a.delete_revocation(&lifted_later.key()).await.unwrap());
    assert!(!b.delete_revocation(&lifted_later.key()).await.unwrap());
    assert_eq!(a.list_revocations().await.unwrap(), vec![longer]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_prunes_report_each_revocation_once() {
    let Some(replicas) = Replicas::connect("revocations_race").await else {
        return;
    };
    let mut keys = Vec::new();
    for i in 0..20 {
        let revocation = jti(&format!("old{i:02}"), Some(NOW - 1));
        replicas.a.put_revocation(&revocation).await.unwrap();
        keys.push(revocation.key());
    }
    replicas
        .a
        .put_revocation(&jti("new", Some(NOW + 1)))
        .await
        .unwrap();
    let (a, b) = (replicas.a.clone(), replicas.b.clone());
    let (from_a, from_b) = tokio::join!(
        tokio::spawn(async move { a.prune_revocations(NOW).await.unwrap() }),
        tokio::spawn(async move { b.prune_revocations(NOW).await.unwrap() }),
    );
    let mut reported = [from_a.unwrap(), from_b.unwrap()].concat();
    reported.sort();
    assert_eq!(reported, keys);
    assert_eq!(
        replicas.a.list_revocations().await.unwrap(),
        vec![jti("new", Some(NOW + 1))]
    );
}

#[tokio::test]
async fn replicas_are_live_until_keep_until() {
    let Some(replicas) = Replicas::connect("replicas").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    a.publish_replica(&replica("r2", NOW + 100)).await.unwrap();
    b.publish_replica(&replica("r1", NOW + 50)).await.unwrap();
    a.publish_replica(&replica("r3", NOW)).await.unwrap();
    assert_eq!(
        b.live_replicas(NOW).await.unwrap(),
        vec![replica("r1", NOW + 50), replica("r2", NOW + 100)],
        "live ones, in id order"
    );
    assert_eq!(
        a.live_replicas(NOW + 60).await.unwrap(),
        vec![replica("r2", NOW + 100)]
    );
    // A refresh brings a replica back.
    b.publish_replica(&replica("r1", NOW + 200)).await.unwrap();
    assert_eq!(
        a.live_replicas(NOW + 60).await.unwrap(),
        vec![replica("r1", NOW + 200), replica("r2", NOW + 100)]
    );
    // Long dead records are forgotten; live ones stay.
    assert_eq!(
        a.live_replicas(NOW + 10 * 3600).await.unwrap(),
        Vec::<ReplicaRecord>::new()
    );
    assert_eq!(
        a.live_replicas(NOW).await.unwrap(),
        Vec::<ReplicaRecord>::new(),
        "dead records were deleted"
    );
}

// ---------------------------------------------------------------------------
// Connecting and secrets

#[tokio::test]
async fn connect_failure_names_the_server_but_not_the_password() {
    // No Redis needed: nothing listens on this port.
    let port = free_port();
    let url = format!("redis://:hunter2-secret@127.0.0.1:{port}/0");
    match RedisStore::connect(&url, "mayfly").await {
        Err(StoreError::Unavailable { reason }) => {
            assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
            assert!(!reason.contains("hunter2"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    match RedisStore::connect("redis://:hunter2-secret@", "mayfly").await {
        Err(StoreError::Unavailable { reason }) => {
            assert!(reason.contains("invalid redis URL"), "{reason}");
            assert!(!reason.contains("hunter2"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn the_password_never_shows() {
    let Some(redis) = TestRedis::start_with(&["--requirepass", "hunter2-secret"]) else {
        return;
    };
    let port = redis.port();
    let wrong = format!("redis://:wrong-password-x@127.0.0.1:{port}");
    match RedisStore::connect(&wrong, "mayfly").await {
        Err(StoreError::Unavailable { reason }) => {
            assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
            assert!(!reason.contains("wrong-password-x"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Positive control: the right password connects.
    let store = RedisStore::connect(
        &format!("redis://:hunter2-secret@127.0.0.1:{port}"),
        "mayfly",
    )
    .await
    .unwrap();
    store.put_revocation(&jti("x", None)).await.unwrap();
    let debug = format!("{store:?}");
    assert!(debug.contains(&format!("127.0.0.1:{port}")), "{debug}");
    assert!(debug.contains("mayfly"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert_eq!(
        store.describe(),
        format!("redis 127.0.0.1:{port} (prefix mayfly)")
    );
}

// ---------------------------------------------------------------------------
// The change feed

#[tokio::test]
async fn feed_starts_with_a_snapshot_then_follows_the_other_replica() {
    let Some(replicas) = Replicas::connect("feed").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let existing = entry("billing/existing");
    let revoked = jti("before", None);
    a.create_entry(&existing).await.unwrap();
    a.put_revocation(&revoked).await.unwrap();

    let mut feed = b.subscribe().expect("a shared store has a feed");
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::Snapshot {
            entries: vec![existing.clone()],
            revocations: vec![revoked.clone()],
        },
        "the feed opens with the whole state"
    );
    let first = wait_for_heard(&mut feed).await;
    let second = wait_for_heard(&mut feed).await;
    assert!(
        second >= first,
        "heartbeats keep coming: {first} then {second}"
    );

    let created = entry("billing/api");
    a.create_entry(&created).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::EntryUpserted(created.clone())
    );
    let updated = changed(&created, "billing/api-v2");
    a.update_entry(&updated, created.revision).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::EntryUpserted(updated.clone())
    );
    let revocation = jti("during", Some(NOW + 100));
    a.put_revocation(&revocation).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::RevocationPut(revocation.clone())
    );
    a.delete_revocation(&revocation.key()).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::RevocationDeleted(revocation.key())
    );
    a.delete_entry(&created.id).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::EntryDeleted(created.id.clone())
    );
    a.publish_replica(&replica("r1", NOW + 100)).await.unwrap();
    assert_eq!(next_change(&mut feed).await, StoreEvent::ReplicasChanged);
    a.put_revocation(&jti("expiring", Some(NOW))).await.unwrap();
    next_change(&mut feed).await;
    a.prune_revocations(NOW).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::RevocationDeleted(jti("expiring", None).key())
    );

    // Refused writes publish nothing: the next event is the next real one.
    assert!(a.create_entry(&existing).await.is_err());
    assert!(!a.delete_revocation("jti:nothing").await.unwrap());
    a.put_revocation(&jti("last", None)).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::RevocationPut(jti("last", None))
    );
    // And the view is still complete: heartbeats, no resync.
    wait_for_heard(&mut feed).await;
}

#[tokio::test]
async fn feed_resyncs_after_a_missed_message() {
    let Some(replicas) = Replicas::connect("feed_gap").await else {
        return;
    };
    let mut feed = replicas.b.subscribe().unwrap();
    assert_eq!(wait_for_snapshot(&mut feed).await, (Vec::new(), Vec::new()));
    wait_for_heard(&mut feed).await;

    // A write whose message never comes: the version moves, nothing is
    // published. The next poll notices and sends the whole state again.
    let hidden = entry("billing/hidden");
    let mut raw = replicas.raw().await;
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(replicas.key("entries"))
        .arg(hidden.id.as_str())
        .arg(serde_json::to_string(&hidden).unwrap())
        .cmd("INCR")
        .arg(replicas.key("version"))
        .exec_async(&mut raw)
        .await
        .unwrap();
    let (entries, _) = wait_for_snapshot(&mut feed).await;
    assert_eq!(entries, vec![hidden.clone()]);
    wait_for_heard(&mut feed).await;

    // A message that skips a version also triggers a resync.
    redis::cmd("INCR")
        .arg(replicas.key("version"))
        .exec_async(&mut raw)
        .await
        .unwrap();
    replicas
        .a
        .put_revocation(&jti("after-gap", None))
        .await
        .unwrap();
    let (_, revocations) = wait_for_snapshot(&mut feed).await;
    assert_eq!(revocations, vec![jti("after-gap", None)]);

    // Positive control: afterwards, changes arrive one by one again.
    replicas.a.delete_entry(&hidden.id).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::EntryDeleted(hidden.id.clone())
    );
}

#[tokio::test]
async fn feed_task_stops_when_the_receiver_is_dropped() {
    let Some(replicas) = Replicas::connect("feed_drop").await else {
        return;
    };
    let channel = replicas.key("events");
    let mut raw = replicas.raw().await;
    let subscribers = async |raw: &mut redis::aio::MultiplexedConnection| {
        let counts: Vec<(String, usize)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(raw)
            .await
            .unwrap();
        counts[0].1
    };
    let mut feed = replicas.b.subscribe().unwrap();
    wait_for_heard(&mut feed).await;
    assert_eq!(subscribers(&mut raw).await, 1);
    drop(feed);
    let deadline = Instant::now() + WAIT;
    while subscribers(&mut raw).await != 0 {
        assert!(Instant::now() < deadline, "the feed task kept running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn feed_and_calls_recover_from_an_outage() {
    let Some(mut server) = TestRedis::start() else {
        return;
    };
    let writer = RedisStore::connect(&server.url(), "outage").await.unwrap();
    let reader = RedisStore::connect(&server.url(), "outage")
        .await
        .unwrap()
        .with_poll_interval(POLL);
    let before = entry("billing/before");
    writer.create_entry(&before).await.unwrap();
    let mut feed = reader.subscribe().unwrap();
    let (entries, _) = wait_for_snapshot(&mut feed).await;
    assert_eq!(entries, vec![before.clone()]);
    wait_for_heard(&mut feed).await;

    server.stop();
    match wait_for(&mut feed, "Lost", |e| matches!(e, StoreEvent::Lost { .. })).await {
        StoreEvent::Lost { reason } => {
            assert!(
                reason.contains(&format!("127.0.0.1:{}", server.port())),
                "{reason}"
            );
        }
        _ => unreachable!(),
    }
    match writer.create_entry(&entry("billing/during")).await {
        Err(StoreError::Unavailable { reason }) => {
            assert!(
                reason.contains(&format!("127.0.0.1:{}", server.port())),
                "{reason}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        reader.use_once("k", NOW + 10, NOW).await,
        Err(StoreError::Unavailable { .. })
    ));
    // While it is down, no heartbeat claims the view is fresh.
    let quiet = tokio::time::timeout(POLL * 5, async {
        loop {
            match feed.recv().await {
                Some(StoreEvent::Lost { .. }) => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "only Lost while Redis is down: {quiet:?}");

    // Back, empty (no persistence): the feed resyncs by itself, and calls
    // work again.
    server.restart();
    let (entries, revocations) = wait_for_snapshot(&mut feed).await;
    assert_eq!((entries, revocations), (Vec::new(), Vec::new()));
    wait_for_heard(&mut feed).await;
    let deadline = Instant::now() + WAIT;
    let after = entry("billing/after");
    while let Err(error) = writer.create_entry(&after).await {
        assert!(Instant::now() < deadline, "still failing: {error}");
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::EntryUpserted(after.clone())
    );
    assert_eq!(reader.list_entries().await.unwrap(), vec![after]);
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}
