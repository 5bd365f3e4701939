//! Revocations: saved by key (`kind:value`), replaced, listed in key order,
//! read a range at a time after any key, deleted, and pruned once expired.

use mayfly_sdk::revocation::{Revocation, RevocationKind};

use crate::fixtures::{NOW, jti};
use crate::harness::Stores;

fn sorted_by_key(mut revocations: Vec<Revocation>) -> Vec<Revocation> {
    revocations.sort_by_key(Revocation::key);
    revocations
}

pub async fn revocations_are_kept_replaced_and_pruned_when_expired(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let expired = jti("expired", Some(NOW));
    let live = jti("live", Some(NOW + 100));
    let serial = Revocation::new(RevocationKind::Serial, "ab", NOW, Some(NOW + 10)).unwrap();
    let spiffe_id = Revocation::new(
        RevocationKind::SpiffeId,
        "spiffe://example.org/billing",
        NOW,
        None,
    )
    .unwrap();
    let mut entry = Revocation::new(RevocationKind::Entry, "0123456789abcdef", NOW, None).unwrap();
    entry.subjects = vec!["spiffe://example.org/a".parse().unwrap()];
    for revocation in [&expired, &live, &serial, &spiffe_id, &entry] {
        a.put_revocation(revocation).await.unwrap();
    }
    let all = vec![
        expired.clone(),
        live.clone(),
        serial.clone(),
        spiffe_id.clone(),
        entry.clone(),
    ];
    assert_eq!(
        b.list_revocations().await.unwrap(),
        sorted_by_key(all),
        "in key order"
    );

    // Putting again replaces: one record per key.
    let mut longer = live.clone();
    longer.expires_at = Some(NOW + 500);
    longer.reason = "still compromised".into();
    b.put_revocation(&longer).await.unwrap();
    let mut lifted = entry.clone();
    lifted.expires_at = Some(NOW + 30);
    a.put_revocation(&lifted).await.unwrap();
    let replaced = vec![
        expired.clone(),
        longer.clone(),
        serial.clone(),
        spiffe_id.clone(),
        lifted.clone(),
    ];
    assert_eq!(a.list_revocations().await.unwrap(), sorted_by_key(replaced));

    // Expired at `now` means `expires_at <= now`; pruning reports each once.
    assert_eq!(
        b.prune_revocations(NOW - 1).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(b.prune_revocations(NOW).await.unwrap(), vec![expired.key()]);
    assert_eq!(
        b.prune_revocations(NOW).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        a.prune_revocations(NOW + 30).await.unwrap(),
        vec![lifted.key(), serial.key()],
        "in key order"
    );
    assert_eq!(
        b.list_revocations().await.unwrap(),
        sorted_by_key(vec![longer.clone(), spiffe_id.clone()])
    );

    assert!(a.delete_revocation(&spiffe_id.key()).await.unwrap());
    assert!(!b.delete_revocation(&spiffe_id.key()).await.unwrap());
    assert_eq!(a.list_revocations().await.unwrap(), vec![longer.clone()]);
    assert!(b.delete_revocation(&longer.key()).await.unwrap());
    assert!(a.list_revocations().await.unwrap().is_empty());
}

pub async fn concurrent_prunes_report_each_revocation_once(stores: Stores) {
    let mut keys = Vec::new();
    for i in 0..20 {
        let revocation = jti(&format!("old{i:02}"), Some(NOW - 1));
        stores.a.put_revocation(&revocation).await.unwrap();
        keys.push(revocation.key());
    }
    let survivor = jti("new", Some(NOW + 1));
    stores.a.put_revocation(&survivor).await.unwrap();
    let (a, b) = (stores.a.clone(), stores.b.clone());
    let (from_a, from_b) = tokio::join!(
        tokio::spawn(async move { a.prune_revocations(NOW).await.unwrap() }),
        tokio::spawn(async move { b.prune_revocations(NOW).await.unwrap() }),
    );
    let mut reported = [from_a.unwrap(), from_b.unwrap()].concat();
    reported.sort();
    assert_eq!(reported, keys);
    assert_eq!(stores.a.list_revocations().await.unwrap(), vec![survivor]);
}

/// Reads every revocation `store` holds, `limit` at a time, each read
/// starting after the last key of the one before.
async fn read_in_steps(store: &dyn mayfly::store::Store, limit: usize) -> Vec<Revocation> {
    let mut read = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let step = store
            .revocations_after(after.as_deref(), limit)
            .await
            .unwrap();
        assert!(step.len() <= limit, "{} > {limit}", step.len());
        let done = step.len() < limit;
        after = step.last().map(Revocation::key);
        read.extend(step);
        if done {
            return read;
        }
    }
}

pub async fn revocations_are_read_in_key_order_after_any_key(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let mut all: Vec<Revocation> = ["m", "c", "x", "a", "q"]
        .into_iter()
        .map(|value| jti(value, Some(NOW + 100)))
        .collect();
    all.push(jti("expired", Some(NOW - 1)));
    all.push(Revocation::new(RevocationKind::Serial, "ff", NOW, Some(NOW + 10)).unwrap());
    all.push(
        Revocation::new(
            RevocationKind::SpiffeId,
            "spiffe://example.org/s",
            NOW,
            None,
        )
        .unwrap(),
    );
    all.push(Revocation::new(RevocationKind::Agent, "spiffe://example.org/n", NOW, None).unwrap());
    for revocation in &all {
        a.put_revocation(revocation).await.unwrap();
    }
    let sorted = sorted_by_key(all);
    // Expired or not: the store does not judge time.
    for limit in [1, 2, 3, 9, 10, 100] {
        assert_eq!(
            read_in_steps(b.as_ref(), limit).await,
            sorted,
            "steps of {limit}"
        );
    }
    let keys =
        |revocations: Vec<Revocation>| revocations.iter().map(Revocation::key).collect::<Vec<_>>();
    // After a key that is not stored: from the next one that is.
    assert_eq!(
        keys(b.revocations_after(Some("jti:b"), 2).await.unwrap()),
        ["jti:c", "jti:expired"]
    );
    // Keys compare as bytes: `jti:` sorts before every jti.
    assert_eq!(
        keys(b.revocations_after(Some("jti:"), 1).await.unwrap()),
        ["jti:a"]
    );
    assert!(
        b.revocations_after(Some("spiffe-id:spiffe://example.org/s"), 5)
            .await
            .unwrap()
            .is_empty(),
        "after the last key"
    );
    assert!(b.revocations_after(None, 0).await.unwrap().is_empty());

    // Deleted and pruned revocations are gone from the range too.
    assert!(a.delete_revocation("jti:c").await.unwrap());
    assert_eq!(
        a.prune_revocations(NOW).await.unwrap(),
        vec!["jti:expired".to_owned()]
    );
    assert_eq!(
        keys(b.revocations_after(Some("jti:a"), 2).await.unwrap()),
        ["jti:m", "jti:q"]
    );
    assert_eq!(read_in_steps(b.as_ref(), 4).await.len(), sorted.len() - 2);
}

/// A batch is saved like as many single puts: each kept once, in key order, and (in a
/// shared store) each told to subscribers.
pub async fn a_batch_of_revocations_is_saved_and_told_like_single_ones(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let mut feed = b.subscribe();
    if let Some(feed) = feed.as_mut() {
        crate::fixtures::wait_for(feed, "the first snapshot", |e| {
            matches!(e, mayfly::store::StoreEvent::Snapshot { .. })
        })
        .await;
    }
    let batch: Vec<Revocation> = (0..1203)
        .map(|n| jti(&format!("bulk-{n:05}"), Some(NOW + 100)))
        .collect();
    a.put_revocations(&batch).await.unwrap();
    // Again: replaced, not duplicated.
    a.put_revocations(&batch[..3]).await.unwrap();
    assert_eq!(
        b.list_revocations().await.unwrap(),
        sorted_by_key(batch.clone())
    );
    a.put_revocations(&[]).await.unwrap();
    let Some(mut feed) = feed else {
        assert!(
            !stores.is_shared(),
            "a shared store must have a change feed"
        );
        return;
    };
    let mut told = Vec::new();
    while told.len() < batch.len() {
        if let mayfly::store::StoreEvent::RevocationPut(revocation) =
            crate::fixtures::next_change(&mut feed).await
        {
            told.push(revocation);
        }
    }
    assert_eq!(told, batch, "each one told, in order");
}
