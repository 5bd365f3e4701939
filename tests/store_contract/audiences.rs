//! Registered audiences: created once, updated with an optimistic revision,
//! deleted, and (in a shared store) told to every subscriber, so that every
//! replica enforces the same registry.

use mayfly::store::{StoreError, StoreEvent};

use crate::fixtures::{NOW, audience, next_change, wait_for};
use crate::harness::Stores;

pub async fn audience_crud_round_trip(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    assert!(b.list_audiences().await.unwrap().is_empty());
    let ledger = audience("ledger");
    let billing = audience("billing");
    a.create_audience(&ledger).await.unwrap();
    a.create_audience(&billing).await.unwrap();
    assert_eq!(
        b.list_audiences().await.unwrap(),
        vec![billing.clone(), ledger.clone()],
        "in name order, through the other handle"
    );
    assert!(matches!(
        b.create_audience(&billing).await,
        Err(StoreError::Conflict { .. })
    ));

    let mut next = billing.clone();
    next.data_class = "phi".into();
    next.revision = 2;
    next.updated_at = NOW + 1;
    // A stale expected revision is refused and changes nothing...
    assert!(matches!(
        b.update_audience(&next, 0).await,
        Err(StoreError::Conflict { .. })
    ));
    // ...and one that does not raise the revision is a caller bug.
    assert!(matches!(
        b.update_audience(&next, 2).await,
        Err(StoreError::Internal { .. })
    ));
    assert_eq!(b.list_audiences().await.unwrap()[0], billing);
    b.update_audience(&next, 1).await.unwrap();
    assert_eq!(a.list_audiences().await.unwrap()[0], next);

    assert_eq!(a.delete_audience("billing").await.unwrap(), next);
    assert!(matches!(
        b.delete_audience("billing").await,
        Err(StoreError::NotFound { .. })
    ));
    let mut gone = audience("billing");
    gone.revision = 2;
    assert!(matches!(
        b.update_audience(&gone, 1).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(a.list_audiences().await.unwrap(), vec![ledger]);
}

pub async fn audience_changes_reach_subscribers(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let existing = audience("existing");
    a.create_audience(&existing).await.unwrap();
    let Some(mut feed) = b.subscribe() else {
        assert!(
            !stores.is_shared(),
            "a shared store must have a change feed"
        );
        return;
    };
    assert_eq!(
        wait_for(&mut feed, "the audiences", |e| matches!(
            e,
            StoreEvent::AudiencesReplaced(_)
        ))
        .await,
        StoreEvent::AudiencesReplaced(vec![existing.clone()]),
        "every snapshot is followed by every audience"
    );
    let created = audience("billing");
    a.create_audience(&created).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::AudienceUpserted(created.clone())
    );
    let mut updated = created.clone();
    updated.environment = "staging".into();
    updated.revision = 2;
    a.update_audience(&updated, 1).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::AudienceUpserted(updated)
    );
    a.delete_audience("billing").await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::AudienceDeleted("billing".into())
    );
}
