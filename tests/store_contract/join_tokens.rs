//! Join tokens: minted for a registered entry, looked up without being
//! spent, redeemed exactly once, refused when expired, unknown or reused,
//! and pruned after expiry.

use std::sync::Arc;

use mayfly::attest::join_token::{JoinTokenRecord, JoinTokenSecret};
use mayfly::policy::Entry;
use mayfly::store::{RedeemError, StoreError};

use crate::fixtures::{NOW, entry, token_for};
use crate::harness::Stores;

/// Mints a join token for `node` through `a`.
async fn mint(
    stores: &Stores,
    node: &Entry,
    expires_at: i64,
) -> (JoinTokenSecret, JoinTokenRecord) {
    let (secret, record) = token_for(node, expires_at);
    stores.a.insert_join_token(&record).await.unwrap();
    (secret, record)
}

pub async fn join_token_needs_a_registered_entry_and_a_fresh_hash(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let node = entry("node/1");
    let (secret, record) = token_for(&node, NOW + 600);
    assert!(matches!(
        a.insert_join_token(&record).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(b.join_token(&secret.hash()).await.unwrap(), None);

    // Positive control: once the entry exists, the token is recorded, once.
    a.create_entry(&node).await.unwrap();
    a.insert_join_token(&record).await.unwrap();
    assert!(matches!(
        b.insert_join_token(&record).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(b.join_token(&secret.hash()).await.unwrap(), Some(record));
}

pub async fn join_token_redeems_once_then_reports_reuse(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [node] = stores.register(["node/1"]).await;
    let (secret, record) = mint(&stores, &node, NOW + 600).await;

    let redeemed = b.redeem_join_token(&secret.hash(), NOW + 10).await.unwrap();
    assert_eq!(
        redeemed,
        JoinTokenRecord {
            used_at: Some(NOW + 10),
            ..record
        }
    );
    assert_eq!(
        a.redeem_join_token(&secret.hash(), NOW + 20).await,
        Err(RedeemError::AlreadyUsed { used_at: NOW + 10 })
    );
    // Reuse is still reported as reuse after expiry: the louder event.
    assert_eq!(
        b.redeem_join_token(&secret.hash(), NOW + 700).await,
        Err(RedeemError::AlreadyUsed { used_at: NOW + 10 })
    );
}

pub async fn join_token_look_up_does_not_redeem(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [node] = stores.register(["node/1"]).await;
    let (secret, record) = mint(&stores, &node, NOW + 600).await;

    assert_eq!(
        b.join_token(&secret.hash()).await.unwrap(),
        Some(record.clone())
    );
    // Looking it up twice spent nothing: it still redeems, once.
    assert_eq!(
        a.join_token(&secret.hash()).await.unwrap(),
        Some(record.clone())
    );
    a.redeem_join_token(&secret.hash(), NOW + 10).await.unwrap();
    assert_eq!(
        b.join_token(&secret.hash()).await.unwrap(),
        Some(JoinTokenRecord {
            used_at: Some(NOW + 10),
            ..record
        }),
        "the record as redeemed"
    );
    let stranger = JoinTokenSecret::generate();
    assert_eq!(a.join_token(&stranger.hash()).await.unwrap(), None);
}

pub async fn expired_and_unknown_join_tokens_are_refused(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [node] = stores.register(["node/1"]).await;
    let (expired, expired_record) = mint(&stores, &node, NOW + 600).await;
    let (fresh, _) = mint(&stores, &node, NOW + 600).await;

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
        b.join_token(&expired.hash()).await.unwrap(),
        Some(expired_record)
    );
    assert_eq!(
        a.redeem_join_token(&JoinTokenSecret::generate().hash(), NOW)
            .await,
        Err(RedeemError::Unknown)
    );
    // Positive control: one second before its expiry a token is valid.
    assert!(b.redeem_join_token(&fresh.hash(), NOW + 599).await.is_ok());
}

pub async fn concurrent_redemptions_yield_exactly_one_success(stores: Stores) {
    let [node] = stores.register(["node/1"]).await;
    let (secret, _) = mint(&stores, &node, NOW + 600).await;

    let handles = [Arc::clone(&stores.a), Arc::clone(&stores.b)];
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&handles[i % 2]);
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

pub async fn prune_removes_only_expired_tokens(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [node] = stores.register(["node/1"]).await;
    let (old_unused, _) = mint(&stores, &node, NOW + 100).await;
    let (old_used, _) = mint(&stores, &node, NOW + 100).await;
    a.redeem_join_token(&old_used.hash(), NOW).await.unwrap();
    let (at_boundary, _) = mint(&stores, &node, NOW + 200).await;
    let (live, _) = mint(&stores, &node, NOW + 300).await;

    assert_eq!(b.prune_join_tokens(NOW + 200).await.unwrap(), 2);
    for pruned in [&old_unused, &old_used] {
        assert_eq!(
            a.redeem_join_token(&pruned.hash(), NOW).await,
            Err(RedeemError::Unknown)
        );
        assert_eq!(b.join_token(&pruned.hash()).await.unwrap(), None);
    }
    // Positive control: what expires at or after `before` stays.
    assert!(a.redeem_join_token(&at_boundary.hash(), NOW).await.is_ok());
    assert!(a.redeem_join_token(&live.hash(), NOW).await.is_ok());
    assert_eq!(a.prune_join_tokens(NOW + 200).await.unwrap(), 0);
}

pub async fn join_tokens_outlive_their_entry(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [node] = stores.register(["node/1"]).await;
    let (secret, _) = mint(&stores, &node, NOW + 600).await;
    a.delete_entry(&node.id).await.unwrap();

    // The token stays until pruned; redeeming it yields an entry id that no
    // longer resolves, which the caller must refuse.
    let redeemed = b.redeem_join_token(&secret.hash(), NOW + 1).await.unwrap();
    assert_eq!(redeemed.entry_id, node.id);
    assert_eq!(a.entry(&node.id).await.unwrap(), None);
    // No new token can be minted for the deleted entry.
    let (_, another) = token_for(&node, NOW + 600);
    assert!(matches!(
        b.insert_join_token(&another).await,
        Err(StoreError::NotFound { .. })
    ));
}
