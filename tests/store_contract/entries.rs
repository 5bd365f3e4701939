//! Registration entries: create, read, update with optimistic concurrency,
//! delete, SPIFFE ID uniqueness, and damaged records.

use mayfly::policy::EntryId;
use mayfly::store::StoreError;

use crate::fixtures::{changed, entry, sorted_by_id};
use crate::harness::Stores;

pub async fn entry_crud_round_trip(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [first, second] = stores.register(["billing/api", "billing/worker"]).await;
    assert_eq!(b.entry(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(
        a.list_entries().await.unwrap(),
        sorted_by_id(vec![first.clone(), second.clone()]),
        "in id order"
    );

    let mut updated = first.clone();
    updated.purpose = "bills patients".into();
    updated.revision = first.revision + 1;
    b.update_entry(&updated, first.revision).await.unwrap();
    assert_eq!(a.entry(&first.id).await.unwrap(), Some(updated.clone()));

    assert_eq!(a.delete_entry(&first.id).await.unwrap(), updated);
    assert_eq!(b.entry(&first.id).await.unwrap(), None);
    assert_eq!(a.entry(&first.id).await.unwrap(), None);
    assert_eq!(b.list_entries().await.unwrap(), vec![second]);
}

/// `entries_after`, the broker's paged load at start: every page in id order, resuming
/// after the last id it saw, stored or not.
pub async fn entries_are_read_in_id_order_after_any_id(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let all = sorted_by_id(
        stores
            .register(["p/1", "p/2", "p/3", "p/4", "p/5"])
            .await
            .to_vec(),
    );
    assert_eq!(b.list_entries().await.unwrap(), all, "the control");
    for limit in [1, 2, 5, 7] {
        let mut read = Vec::new();
        let mut after: Option<EntryId> = None;
        loop {
            let step = b.entries_after(after.as_ref(), limit).await.unwrap();
            assert!(step.len() <= limit, "{} > {limit}", step.len());
            let done = step.len() < limit;
            after = step.last().map(|entry| entry.id.clone());
            read.extend(step);
            if done {
                break;
            }
        }
        assert_eq!(read, all, "pages of {limit}");
    }
    // After an id that is not stored: from the next one that is.
    // After an id that is not stored (the one just past the second): from the third.
    let next = u64::from_str_radix(all[1].id.as_str(), 16).unwrap() + 1;
    let unstored = EntryId::parse(&format!("{next:016x}")).unwrap();
    assert_eq!(
        a.entries_after(Some(&unstored), 1).await.unwrap(),
        vec![all[2].clone()]
    );
    assert_eq!(
        a.entries_after(Some(&all[4].id), 3).await.unwrap(),
        Vec::new(),
        "after the last id"
    );
    assert!(a.entries_after(None, 0).await.unwrap().is_empty());
    assert_eq!(
        a.entries_after(None, 2).await.unwrap(),
        all[..2].to_vec(),
        "from the first"
    );
}

pub async fn create_refuses_a_taken_id_or_spiffe_id(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [original] = stores.register(["billing/api"]).await;

    let mut same_id = entry("billing/other");
    same_id.id = original.id.clone();
    assert!(matches!(
        b.create_entry(&same_id).await,
        Err(StoreError::Conflict { .. })
    ));
    match b.create_entry(&entry("billing/api")).await {
        Err(StoreError::Conflict { reason }) => {
            assert!(
                reason.contains(original.id.as_str()),
                "names the owner: {reason}"
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(a.list_entries().await.unwrap(), vec![original.clone()]);

    // Positive control: a distinct entry is accepted.
    let other = entry("billing/other");
    b.create_entry(&other).await.unwrap();
    assert_eq!(
        a.list_entries().await.unwrap(),
        sorted_by_id(vec![original, other])
    );
}

pub async fn update_refuses_a_stale_revision(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [original] = stores.register(["billing/api"]).await;

    // Two writers hold the same revision: the first wins, the second is
    // refused and changes nothing.
    let by_a = changed(&original, "billing/api-a");
    let by_b = changed(&original, "billing/api-b");
    a.update_entry(&by_a, original.revision).await.unwrap();
    assert!(matches!(
        b.update_entry(&by_b, original.revision).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(b.entry(&original.id).await.unwrap(), Some(by_a.clone()));

    // Positive control: re-read and retry against the current revision.
    let retried = changed(&by_a, "billing/api-b");
    b.update_entry(&retried, by_a.revision).await.unwrap();
    assert_eq!(a.entry(&original.id).await.unwrap(), Some(retried));
}

pub async fn update_must_raise_the_revision(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [original] = stores.register(["billing/api"]).await;

    // A revision that does not go up is our bug, not a conflict.
    let mut flat = original.clone();
    flat.owner = "someone@example.org".into();
    assert!(matches!(
        a.update_entry(&flat, original.revision).await,
        Err(StoreError::Internal { .. })
    ));
    assert_eq!(b.entry(&original.id).await.unwrap(), Some(original.clone()));

    // Positive control: the same change, one revision up.
    let mut raised = flat;
    raised.revision = original.revision + 1;
    b.update_entry(&raised, original.revision).await.unwrap();
    assert_eq!(a.entry(&original.id).await.unwrap(), Some(raised));
}

pub async fn update_keeps_spiffe_ids_unique(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [api, _worker] = stores.register(["billing/api", "billing/worker"]).await;

    // Taking another entry's SPIFFE ID is a conflict.
    assert!(matches!(
        b.update_entry(&changed(&api, "billing/worker"), api.revision)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(a.entry(&api.id).await.unwrap(), Some(api.clone()));

    // Moving to a free SPIFFE ID works and releases the old one.
    let moved = changed(&api, "billing/api-v2");
    b.update_entry(&moved, api.revision).await.unwrap();
    assert_eq!(a.entry(&api.id).await.unwrap(), Some(moved));
    a.create_entry(&entry("billing/api")).await.unwrap();
    assert!(matches!(
        a.create_entry(&entry("billing/api-v2")).await,
        Err(StoreError::Conflict { .. })
    ));
}

pub async fn missing_entries_are_not_found(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [present] = stores.register(["billing/api"]).await;
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
    // The refused writes changed nothing.
    assert_eq!(b.list_entries().await.unwrap(), vec![present.clone()]);

    // Positive control: the present one is deleted, once.
    assert_eq!(b.delete_entry(&present.id).await.unwrap(), present);
    assert!(matches!(
        a.delete_entry(&present.id).await,
        Err(StoreError::NotFound { .. })
    ));
    // Its SPIFFE ID is free again.
    a.create_entry(&entry("billing/api")).await.unwrap();
}

pub async fn undecodable_entries_are_corrupt(stores: Stores) {
    let [good] = stores.register(["billing/api"]).await;
    // Positive control: before the damage, everything reads.
    assert_eq!(stores.a.list_entries().await.unwrap(), vec![good.clone()]);

    let damaged = EntryId::parse("0123456789abcdef").unwrap();
    let stores = stores.with_undecodable_entry(&damaged).await;
    assert!(matches!(
        stores.a.list_entries().await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        stores.b.entry(&damaged).await,
        Err(StoreError::Corrupt { .. })
    ));
    // Only the damaged record fails to read.
    assert_eq!(stores.b.entry(&good.id).await.unwrap(), Some(good));
}
