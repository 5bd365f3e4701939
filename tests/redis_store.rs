//! What only the Redis store has: connecting (and never showing the
//! password), the change feed over pub/sub (heartbeats, resync after a
//! missed message, stopping with its receiver), recovery from an outage
//! (failing closed while Redis is down), and the records Redis expires or
//! tidies by itself.
//!
//! The contract both stores keep (entries, join tokens, replay records,
//! challenges, revocations, usage, replicas, the feed's opening snapshot) is
//! tested once for both in `tests/store_contract/`, across two connections
//! as two replicas hold them.
//!
//! Needs Redis at `MAYFLY_TEST_REDIS` (default `redis://127.0.0.1:6379`)
//! and the `redis-server` binary; without them the tests are skipped, or
//! fail under `CI=true`. Each test works under its own key prefix and
//! deletes its keys when done.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Only the Redis helpers: not the broker helpers of `common`.
#[path = "common/redis.rs"]
mod redis_support;
// Entries, revocations and feed helpers, shared with the contract suite.
#[path = "store_contract/fixtures.rs"]
mod fixtures;

use std::time::{Duration, Instant};

use fixtures::{
    NOW, WAIT, changed, entry, jti, next_change, replica, unix_now, wait_for, wait_for_heard,
    wait_for_snapshot,
};
use mayfly::store::{RedisStore, ReplicaRecord, Store, StoreError, StoreEvent};
use redis_support::{FEED_POLL, Replicas, TestRedis, free_port};

// ---------------------------------------------------------------------------
// What Redis keeps by itself

#[tokio::test]
async fn redis_expires_one_time_records_by_itself() {
    let Some(replicas) = Replicas::connect("one_time_expiry").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let now = unix_now();
    assert!(a.use_once("oidc:gh:jti:1", now + 100, now).await.unwrap());
    a.insert_challenge("c1", b"nonce", now + 100).await.unwrap();

    // Nothing for the store to prune: Redis forgets each record a grace
    // period (10 minutes) after its expiry, by its own clock.
    assert_eq!(b.prune_one_time(now + 400).await.unwrap(), 0);
    let mut raw = replicas.keys.connection().await;
    for key in ["once:oidc:gh:jti:1", "challenge:c1"] {
        let left_ms: i64 = redis::cmd("PTTL")
            .arg(replicas.keys.key(key))
            .query_async(&mut raw)
            .await
            .unwrap();
        // 100 s to its expiry and 600 s of grace, less this test's moments;
        // -1 (kept forever) or -2 (gone) would fail.
        assert!(
            (690_000..=700_000).contains(&left_ms),
            "{key}: {left_ms} ms"
        );
    }
}

#[tokio::test]
async fn long_dead_replica_records_are_deleted() {
    let Some(replicas) = Replicas::connect("replicas_dead").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    a.publish_replica(&replica("r1", NOW)).await.unwrap();

    // Dead for an hour, the grace period: kept for replicas whose clock
    // runs behind.
    assert_eq!(b.live_replicas(NOW + 3600).await.unwrap(), Vec::new());
    assert_eq!(
        a.live_replicas(NOW - 1).await.unwrap(),
        vec![replica("r1", NOW)],
        "kept within the grace period"
    );
    // Dead for longer: deleted by whoever reads.
    assert_eq!(b.live_replicas(NOW + 3601).await.unwrap(), Vec::new());
    assert_eq!(
        a.live_replicas(NOW - 1).await.unwrap(),
        Vec::<ReplicaRecord>::new(),
        "deleted"
    );
}

// ---------------------------------------------------------------------------
// The index revocation listings page through

/// Revocations written by a version without the key index (or by such a
/// replica during an upgrade) are in the hash only; the first range read
/// rebuilds the index, and keys whose revocation is gone are passed over.
#[tokio::test]
async fn the_revocation_key_index_is_rebuilt_from_what_older_writers_left() {
    let Some(replicas) = Replicas::connect("revocation_index").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let mut raw = replicas.keys.connection().await;
    // More than one pass of the script (1000 keys) and than one read asks.
    let planted: Vec<_> = (0..2_500)
        .map(|n| jti(&format!("old-{n:05}"), Some(NOW + 100)))
        .collect();
    let mut hset = redis::cmd("HSET");
    hset.arg(replicas.keys.key("revocations"));
    for revocation in &planted {
        hset.arg(revocation.key())
            .arg(serde_json::to_string(revocation).unwrap());
    }
    hset.exec_async(&mut raw).await.unwrap();
    // One written by this version: the index holds it alone.
    let new = jti("new", Some(NOW + 100));
    a.put_revocation(&new).await.unwrap();
    let indexed = |raw: &mut redis::aio::MultiplexedConnection| {
        let key = replicas.keys.key("revocation_keys");
        let mut raw = raw.clone();
        async move {
            redis::cmd("ZCARD")
                .arg(key)
                .query_async::<usize>(&mut raw)
                .await
                .unwrap()
        }
    };
    assert_eq!(indexed(&mut raw).await, 1);

    let first = b.revocations_after(None, 1_500).await.unwrap();
    assert_eq!(indexed(&mut raw).await, 2_501, "rebuilt");
    let rest = b
        .revocations_after(Some(&first.last().unwrap().key()), 1_500)
        .await
        .unwrap();
    let mut expected = planted.clone();
    expected.push(new.clone());
    expected.sort_by_key(|r| r.key());
    assert_eq!([first, rest].concat(), expected);

    // An older replica deletes from the hash alone: its key stays in the
    // index, is passed over, and dropped from it.
    redis::cmd("HDEL")
        .arg(replicas.keys.key("revocations"))
        .arg(planted[0].key())
        .exec_async(&mut raw)
        .await
        .unwrap();
    expected.retain(|r| r.key() != planted[0].key());
    let read = b.revocations_after(None, 2).await.unwrap();
    assert_eq!(read, expected[..2].to_vec());
    assert_eq!(indexed(&mut raw).await, 2_500);
    // This version's deletes and prunes keep the index in step.
    assert!(a.delete_revocation(&new.key()).await.unwrap());
    assert_eq!(indexed(&mut raw).await, 2_499);
    assert_eq!(a.prune_revocations(NOW + 100).await.unwrap().len(), 2_499);
    assert_eq!(indexed(&mut raw).await, 0);
    assert!(b.revocations_after(None, 10).await.unwrap().is_empty());
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

// What the opening snapshot holds is part of the contract suite
// (`subscribers_start_from_the_stored_state`).
#[tokio::test]
async fn feed_sends_heartbeats_and_every_kind_of_change() {
    let Some(replicas) = Replicas::connect("feed").await else {
        return;
    };
    let (a, b) = (&replicas.a, &replicas.b);
    let existing = entry("billing/existing");
    a.create_entry(&existing).await.unwrap();

    let mut feed = b.subscribe().expect("a shared store has a feed");
    wait_for_snapshot(&mut feed).await;
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
    let mut raw = replicas.keys.connection().await;
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(replicas.keys.key("entries"))
        .arg(hidden.id.as_str())
        .arg(serde_json::to_string(&hidden).unwrap())
        .cmd("INCR")
        .arg(replicas.keys.key("version"))
        .exec_async(&mut raw)
        .await
        .unwrap();
    let (entries, _) = wait_for_snapshot(&mut feed).await;
    assert_eq!(entries, vec![hidden.clone()]);
    wait_for_heard(&mut feed).await;

    // A message that skips a version also triggers a resync.
    redis::cmd("INCR")
        .arg(replicas.keys.key("version"))
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
    let channel = replicas.keys.key("events");
    let mut raw = replicas.keys.connection().await;
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
        .with_poll_interval(FEED_POLL);
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
    let quiet = tokio::time::timeout(FEED_POLL * 5, async {
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
        tokio::time::sleep(FEED_POLL).await;
    }
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::EntryUpserted(after.clone())
    );
    assert_eq!(reader.list_entries().await.unwrap(), vec![after]);
}
