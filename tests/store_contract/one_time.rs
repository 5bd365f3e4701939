//! Replay records (one-time keys) and x509pop challenges: each accepted or
//! answered once, judged by the caller's clock.
//!
//! Times are real ([`unix_now`]): Redis forgets these records by its own
//! clock. How many records `prune_one_time` counts is the store's own
//! business (Redis expires them itself and counts none), so the suite only
//! checks that pruning never forgets a live one.

use std::sync::Arc;

use mayfly::store::StoreError;

use crate::fixtures::unix_now;
use crate::harness::Stores;

pub async fn one_time_keys_are_accepted_once_until_they_expire(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let now = unix_now();
    // In order: through which handle, key, expires_at, the caller's now,
    // whether it is accepted, and why.
    let steps = [
        (a, "oidc:gh:jti:1", now + 100, now, true, "first use"),
        (
            b,
            "oidc:gh:jti:1",
            now + 100,
            now + 50,
            false,
            "replay through the other handle",
        ),
        (
            a,
            "oidc:gh:jti:1",
            now + 100,
            now + 100,
            false,
            "replay until expiry, inclusive",
        ),
        (b, "oidc:gh:jti:2", now + 100, now + 50, true, "another key"),
        (
            b,
            "oidc:gh:jti:1",
            now + 300,
            now + 101,
            true,
            "usable again after expiry",
        ),
        (
            a,
            "oidc:gh:jti:1",
            now + 300,
            now + 102,
            false,
            "and then guarded again",
        ),
    ];
    for (store, key, expires_at, at, accepted, why) in steps {
        assert_eq!(
            store.use_once(key, expires_at, at).await.unwrap(),
            accepted,
            "{why}"
        );
    }
}

pub async fn concurrent_use_once_yields_exactly_one_success(stores: Stores) {
    let now = unix_now();
    let handles = [Arc::clone(&stores.a), Arc::clone(&stores.b)];
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&handles[i % 2]);
            tokio::spawn(async move { store.use_once("k8s:c:jti:x", now + 100, now).await })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap().unwrap());
    }
    assert_eq!(wins, 1);
}

pub async fn challenges_are_taken_once(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
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
        Some((b"nonce".to_vec(), expires_at)),
        "the first nonce, not the refused one"
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

pub async fn pruning_one_time_records_keeps_live_ones(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let now = unix_now();
    assert!(
        a.use_once("oidc:gh:jti:live", now + 100, now)
            .await
            .unwrap()
    );
    a.insert_challenge("live", b"nonce", now + 100)
        .await
        .unwrap();

    b.prune_one_time(now + 50).await.unwrap();
    assert!(
        !a.use_once("oidc:gh:jti:live", now + 100, now + 50)
            .await
            .unwrap(),
        "still a replay"
    );
    assert_eq!(
        b.take_challenge("live").await.unwrap(),
        Some((b"nonce".to_vec(), now + 100))
    );
}
