//! Revocations: saved by key (`kind:value`), replaced, listed in key order,
//! deleted, and pruned once expired.

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
