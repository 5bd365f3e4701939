//! Break-glass grants: created once, read back whole, and changed only with an
//! optimistic revision, so that one writer wins each approval, use and end.

use mayfly::policy::grant::{GrantRecord, IssuedCredential, IssuedKind, Operator};
use mayfly::store::StoreError;

use crate::fixtures::NOW;
use crate::harness::Stores;

fn grant(id: &str) -> GrantRecord {
    GrantRecord {
        id: id.into(),
        entry_id: mayfly::policy::EntryId::parse("fedcba9876543210").unwrap(),
        spiffe_id: mayfly_sdk::SpiffeId::parse("spiffe://example.org/api").unwrap(),
        owner: "team@example.org".into(),
        audience: Some(mayfly_sdk::jwt::Audience::new("ledger").unwrap()),
        ttl_seconds: 1800,
        reason: "outage".into(),
        ticket: "INC-1".into(),
        requested_by: Operator {
            uid: 1001,
            name: Some("alice".into()),
        },
        requested_at: NOW,
        approve_by: NOW + 3600,
        approval: None,
        ended: None,
        review: None,
        issued: Vec::new(),
        revision: 1,
    }
}

pub async fn grant_round_trip_with_optimistic_revisions(stores: Stores) {
    let (a, b) = (&stores.a, &stores.b);
    assert!(b.list_grants().await.unwrap().is_empty());
    assert_eq!(b.grant("0000000000000002").await.unwrap(), None);
    let second = grant("0000000000000002");
    let first = grant("0000000000000001");
    a.create_grant(&second).await.unwrap();
    a.create_grant(&first).await.unwrap();
    assert_eq!(
        b.list_grants().await.unwrap(),
        vec![first.clone(), second.clone()],
        "in id order, through the other handle"
    );
    assert!(matches!(
        b.create_grant(&first).await,
        Err(StoreError::Conflict { .. })
    ));

    let mut used = first.next();
    used.issued.push(IssuedCredential {
        kind: IssuedKind::Jwt,
        id: "jti-1".into(),
        expires_at: NOW + 60,
    });
    // Two writers read revision 1; the first to write wins, the other is told.
    b.update_grant(&used, 1).await.unwrap();
    let mut racing = first.next();
    racing.reason = "lost".into();
    assert!(matches!(
        a.update_grant(&racing, 1).await,
        Err(StoreError::Conflict { .. })
    ));
    // One that does not raise the revision is a caller bug.
    assert!(matches!(
        a.update_grant(&used, 2).await,
        Err(StoreError::Internal { .. })
    ));
    assert_eq!(a.grant(&first.id).await.unwrap(), Some(used.clone()));
    let missing = grant("0000000000000003").next();
    assert!(matches!(
        a.update_grant(&missing, 1).await,
        Err(StoreError::NotFound { .. })
    ));
}
