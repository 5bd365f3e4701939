//! Usage records: batches add up across writers, the latest mint time wins,
//! and a deleted entry's usage neither stays nor comes back; per-audience
//! counts add up the same way, bounded, and records saved before them
//! still read.

use std::collections::BTreeMap;

use mayfly::policy::Entry;
use mayfly::store::{MAX_USAGE_AUDIENCES, UsageCount, UsageRecord};

use crate::fixtures::{NOW, entry};
use crate::harness::Stores;

fn record(entry: &Entry, last_minted_at: i64, mint_count: u64) -> UsageRecord {
    UsageRecord {
        entry_id: entry.id.clone(),
        last_minted_at,
        mint_count,
        x509: UsageCount::default(),
        audiences: BTreeMap::new(),
    }
}

fn count(last_minted_at: i64, mint_count: u64) -> UsageCount {
    UsageCount {
        last_minted_at,
        mint_count,
    }
}

/// A batch of `x509` X509-SVIDs and JWT-SVIDs per audience.
fn minted(entry: &Entry, last: i64, x509: u64, jwts: &[(&str, i64, u64)]) -> UsageRecord {
    let audiences: BTreeMap<String, UsageCount> = jwts
        .iter()
        .map(|(audience, at, n)| ((*audience).to_owned(), count(*at, *n)))
        .collect();
    UsageRecord {
        mint_count: x509 + audiences.values().map(|c| c.mint_count).sum::<u64>(),
        x509: if x509 > 0 {
            count(last, x509)
        } else {
            UsageCount::default()
        },
        audiences,
        ..record(entry, last, 0)
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

pub async fn usage_per_audience_adds_up_is_bounded_and_old_records_read(stores: Stores) {
    let [api, old] = stores.register(["billing/api", "billing/old"]).await;
    // A record as saved before per-audience counts: no x509, no audiences.
    let stores = stores
        .with_raw(
            "usage",
            old.id.as_str(),
            &format!(
                r#"{{"entry_id":"{}","last_minted_at":{},"mint_count":4}}"#,
                old.id,
                NOW + 1
            ),
        )
        .await;
    let (a, b) = (&stores.a, &stores.b);
    assert_eq!(
        b.usage().await.unwrap(),
        vec![record(&old, NOW + 1, 4)],
        "an old record reads with zero per-kind counts"
    );

    a.record_usage(&[minted(&api, NOW + 10, 2, &[("pay", NOW + 9, 3)])])
        .await
        .unwrap();
    b.record_usage(&[
        minted(
            &api,
            NOW + 20,
            0,
            &[("pay", NOW + 20, 1), ("ledger", NOW + 15, 2)],
        ),
        minted(&old, NOW + 30, 1, &[]),
    ])
    .await
    .unwrap();
    let usage = a.usage().await.unwrap();
    let of = |entry: &Entry| {
        usage
            .iter()
            .find(|r| r.entry_id == entry.id)
            .unwrap()
            .clone()
    };
    let api_usage = of(&api);
    assert_eq!(
        (api_usage.last_minted_at, api_usage.mint_count),
        (NOW + 20, 8)
    );
    assert_eq!(api_usage.x509, count(NOW + 10, 2));
    assert_eq!(api_usage.audiences.len(), 2);
    assert_eq!(api_usage.audiences["pay"], count(NOW + 20, 4));
    assert_eq!(api_usage.audiences["ledger"], count(NOW + 15, 2));
    let old_usage = of(&old);
    assert_eq!(
        (old_usage.last_minted_at, old_usage.mint_count),
        (NOW + 30, 5)
    );
    assert_eq!(old_usage.x509, count(NOW + 30, 1));
    assert!(old_usage.audiences.is_empty());

    // At most MAX_USAGE_AUDIENCES audiences per entry; the totals count all.
    let many: Vec<String> = (0..MAX_USAGE_AUDIENCES + 3)
        .map(|n| format!("aud-{n:03}"))
        .collect();
    let jwts: Vec<(&str, i64, u64)> = many.iter().map(|a| (a.as_str(), NOW + 40, 1)).collect();
    b.record_usage(&[minted(&api, NOW + 40, 0, &jwts)])
        .await
        .unwrap();
    let api_usage = a
        .usage()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.entry_id == api.id)
        .unwrap();
    assert_eq!(api_usage.audiences.len(), MAX_USAGE_AUDIENCES);
    assert_eq!(api_usage.audiences["pay"], count(NOW + 20, 4), "kept");
    assert_eq!(api_usage.mint_count, 8 + many.len() as u64);
}
