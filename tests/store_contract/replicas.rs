//! What replicas learn of each other through the store, and what it says
//! about itself: replica records, the change feed, the status line.
//!
//! A store one replica owns (embedded) has nobody to tell: it keeps no
//! replica records and has no change feed. A shared one (Redis) has both.

use mayfly::store::{ReplicaRecord, StoreEvent};

use crate::fixtures::{NOW, entry, jti, next_change, replica};
use crate::harness::Stores;

pub async fn replicas_are_live_until_keep_until(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    if !stores.is_shared() {
        // Its own keys are served from memory: publishing succeeds, and
        // there is no other replica to list.
        a.publish_replica(&replica("r1", NOW + 100)).await.unwrap();
        assert_eq!(b.live_replicas(NOW).await.unwrap(), Vec::new());
        return;
    }
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
    assert_eq!(
        a.live_replicas(NOW + 200).await.unwrap(),
        Vec::<ReplicaRecord>::new()
    );
}

pub async fn subscribers_start_from_the_stored_state(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let existing = entry("billing/existing");
    let revoked = jti("before", None);
    a.create_entry(&existing).await.unwrap();
    a.put_revocation(&revoked).await.unwrap();

    let Some(mut feed) = b.subscribe() else {
        assert!(
            !stores.is_shared(),
            "a shared store must have a change feed"
        );
        return;
    };
    assert!(stores.is_shared(), "the only writer needs no change feed");
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::Snapshot {
            entries: vec![existing.clone()],
            revocations: vec![revoked],
        },
        "the feed opens with the whole state"
    );
    // Then every change, from whichever writer.
    a.delete_entry(&existing.id).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        StoreEvent::EntryDeleted(existing.id)
    );
}

pub async fn describe_names_the_store(stores: Stores) {
    let description = stores.a.describe();
    for mark in stores.description_marks() {
        assert!(
            description.contains(&mark),
            "{description:?} lacks {mark:?}"
        );
    }
}
