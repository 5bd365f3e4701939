//! Usage records: batches add up across writers, the latest mint time wins,
//! and a deleted entry's usage neither stays nor comes back.

use mayfly::policy::Entry;
use mayfly::store::UsageRecord;

use crate::fixtures::{NOW, entry};
use crate::harness::Stores;

fn record(entry: &Entry, last_minted_at: i64, mint_count: u64) -> UsageRecord {
    UsageRecord {
        entry_id: entry.id.clone(),
        last_minted_at,
        mint_count,
    }
}

pub async fn usage_counts_add_up_and_the_latest_time_wins(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    let [api, worker] = stores.register(["billing/api", "billing/worker"]).await;
    assert_eq!(b.usage().await.unwrap(), vec![]);

    a.record_usage(&[record(&api, NOW + 10, 3), record(&worker, NOW + 5, 1)])
        .await
        .unwrap();
    // Another replica's mints add to these; the later time wins even if a
    // batch arrives late.
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
