//! `ListEntries` and `ListRevocations` a page at a time, on one broker (the
//! embedded store): every item that exists throughout a listing is listed
//! exactly once even with creations and deletions between the pages;
//! filters list exactly what matches; malformed and foreign page tokens
//! are the caller's mistake; a client that sends no page size still gets
//! the whole list while it is small.
//!
//! The listing of a list too large for one gRPC message, through the real
//! CLI, is in `tests/cli.rs`; the store's range reads in
//! `tests/store_contract/revocations.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::{TRUST_DOMAIN, TestBroker};
use mayfly::clock::Clock as _;
use mayfly_sdk::proto::v1 as pb;
use tonic::Code;

fn id(path: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}{path}")
}

async fn entries_page(
    broker: &TestBroker,
    request: pb::ListEntriesRequest,
) -> Result<pb::ListEntriesResponse, tonic::Status> {
    broker
        .admin()
        .await
        .list_entries(request)
        .await
        .map(|r| r.into_inner())
}

async fn revocations_page(
    broker: &TestBroker,
    request: pb::ListRevocationsRequest,
) -> Result<pb::ListRevocationsResponse, tonic::Status> {
    broker
        .admin()
        .await
        .list_revocations(request)
        .await
        .map(|r| r.into_inner())
}

/// Every entry `request` lists, following its pages; each SPIFFE ID path
/// with how often it came.
async fn all_entries(broker: &TestBroker, request: pb::ListEntriesRequest) -> Vec<String> {
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = entries_page(
            broker,
            pb::ListEntriesRequest {
                page_token: token,
                ..request.clone()
            },
        )
        .await
        .unwrap();
        listed.extend(page.entries.iter().map(|e| e.spiffe_id.clone()));
        if page.next_page_token.is_empty() {
            return listed;
        }
        token = page.next_page_token;
    }
}

/// Every revocation key (`kind:value`) `request` lists, following its pages.
async fn all_revocations(broker: &TestBroker, request: pb::ListRevocationsRequest) -> Vec<String> {
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = revocations_page(
            broker,
            pb::ListRevocationsRequest {
                page_token: token,
                ..request.clone()
            },
        )
        .await
        .unwrap();
        listed.extend(
            page.revocations
                .iter()
                .map(|r| format!("{}:{}", r.kind, r.value)),
        );
        if page.next_page_token.is_empty() {
            return listed;
        }
        token = page.next_page_token;
    }
}

fn counts(items: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for item in items {
        *counts.entry(item.as_str()).or_default() += 1;
    }
    counts
}

async fn revoke(broker: &TestBroker, kind: &str, value: &str) {
    common::revoke_via(broker.admin().await, kind, value, "paging test")
        .await
        .unwrap();
}

#[tokio::test]
async fn entries_created_and_deleted_between_pages_do_not_shift_the_others() {
    let broker = TestBroker::start().await;
    let mut ids = HashMap::new();
    for n in 0..25 {
        let entry = broker.create_entry(&format!("/w/{n:02}"), &["db"]).await;
        ids.insert(entry.spiffe_id.clone(), entry.id);
    }
    let first = pb::ListEntriesRequest {
        page_size: Some(4),
        ..Default::default()
    };
    let mut listed = Vec::new();
    let mut page = entries_page(&broker, first.clone()).await.unwrap();
    assert_eq!(page.entries.len(), 4);
    listed.extend(page.entries.iter().map(|e| e.spiffe_id.clone()));

    // Between pages: delete one listed entry and one not listed yet, and
    // create new ones (their random ids fall anywhere in the order).
    let listed_one = page.entries[1].id.clone();
    let not_yet = ids
        .iter()
        .filter(|(spiffe_id, _)| !listed.contains(spiffe_id))
        .map(|(spiffe_id, id)| (spiffe_id.clone(), id.clone()))
        .min()
        .unwrap();
    let mut admin = broker.admin().await;
    for id in [&listed_one, &not_yet.1] {
        admin
            .delete_entry(pb::DeleteEntryRequest { id: id.clone() })
            .await
            .unwrap();
    }
    for n in 0..5 {
        broker.create_entry(&format!("/new/{n}"), &["db"]).await;
    }
    let mut pages = 1;
    while !page.next_page_token.is_empty() {
        page = entries_page(
            &broker,
            pb::ListEntriesRequest {
                page_token: page.next_page_token.clone(),
                ..first.clone()
            },
        )
        .await
        .unwrap();
        assert!(page.entries.len() <= 4);
        listed.extend(page.entries.iter().map(|e| e.spiffe_id.clone()));
        pages += 1;
    }
    assert!(pages >= 6, "25 entries in pages of 4: {pages}");
    let counts = counts(&listed);
    assert!(counts.values().all(|&n| n == 1), "listed twice: {counts:?}");
    for spiffe_id in ids.keys() {
        if *spiffe_id == not_yet.0 {
            assert!(!counts.contains_key(spiffe_id.as_str()), "deleted first");
        } else {
            assert!(counts.contains_key(spiffe_id.as_str()), "{spiffe_id} lost");
        }
    }
}

#[tokio::test]
async fn entry_filters_list_exactly_what_matches() {
    let broker = TestBroker::start().await;
    let specs = [
        (
            "/billing/api",
            "team-billing",
            "prod",
            "phi",
            Some("/agent/1"),
        ),
        ("/billing/batch", "team-billing", "staging", "phi", None),
        ("/billing-eu/api", "team-billing", "prod", "none", None),
        (
            "/reports",
            "team-reports",
            "prod",
            "internal",
            Some("/agent/1"),
        ),
        (
            "/reports/eu",
            "team-reports",
            "test",
            "internal",
            Some("/agent/2"),
        ),
    ];
    for (path, owner, environment, data_class, parent) in specs {
        broker
            .create_entry_from(pb::EntrySpec {
                owner: Some(owner.into()),
                environment: Some(environment.into()),
                data_class: Some(data_class.into()),
                parent_id: parent.map(id),
                ..TestBroker::entry_spec(path, &["db"], &[])
            })
            .await
            .unwrap();
    }
    let listed = |request: pb::ListEntriesRequest| {
        let broker = &broker;
        async move {
            // Pages of one: the filters hold across pages too.
            let request = pb::ListEntriesRequest {
                page_size: Some(1),
                ..request
            };
            let mut paths: Vec<String> = all_entries(broker, request)
                .await
                .into_iter()
                .map(|s| s.trim_start_matches(&id("")).to_owned())
                .collect();
            paths.sort();
            paths
        }
    };
    assert_eq!(listed(Default::default()).await.len(), 5, "no filter");
    assert_eq!(
        listed(pb::ListEntriesRequest {
            owner: "team-billing".into(),
            environment: "prod".into(),
            ..Default::default()
        })
        .await,
        ["/billing-eu/api", "/billing/api"]
    );
    assert_eq!(
        listed(pb::ListEntriesRequest {
            data_class: "internal".into(),
            ..Default::default()
        })
        .await,
        ["/reports", "/reports/eu"]
    );
    assert_eq!(
        listed(pb::ListEntriesRequest {
            spiffe_id_prefix: id("/billing/"),
            ..Default::default()
        })
        .await,
        ["/billing/api", "/billing/batch"]
    );
    assert_eq!(
        listed(pb::ListEntriesRequest {
            parent_id: id("/agent/1"),
            ..Default::default()
        })
        .await,
        ["/billing/api", "/reports"]
    );
    // Negative controls: a filter nothing matches lists nothing.
    for request in [
        pb::ListEntriesRequest {
            owner: "team-billing".into(),
            environment: "test".into(),
            ..Default::default()
        },
        pb::ListEntriesRequest {
            parent_id: id("/agent/9"),
            ..Default::default()
        },
        pb::ListEntriesRequest {
            spiffe_id_prefix: id("/nothing"),
            ..Default::default()
        },
    ] {
        assert!(listed(request.clone()).await.is_empty(), "{request:?}");
    }
    // A filter that cannot be one is refused, not read as "nothing".
    let refused = entries_page(
        &broker,
        pb::ListEntriesRequest {
            spiffe_id_prefix: "/billing".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("spiffe_id_prefix"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn revocations_made_and_dropped_between_pages_do_not_shift_the_others() {
    let broker = TestBroker::start().await;
    // In key order: agent:… < jti:… < spiffe-id:…
    let agents: Vec<String> = (0..8).map(|n| id(&format!("/agent/{n}"))).collect();
    let lifted_ids: Vec<String> = (0..6).map(|n| id(&format!("/lifted/{n}"))).collect();
    for agent in &agents {
        revoke(&broker, "agent", agent).await;
    }
    for spiffe_id in &lifted_ids {
        revoke(&broker, "spiffe-id", spiffe_id).await;
    }
    // Past every credential the identity revocations could cover: lifting
    // one then deletes it at once.
    broker.clock.advance(Duration::from_secs(3 * 3600));
    let jtis: Vec<String> = (0..12).map(|n| format!("jti-{n:02}")).collect();
    for jti in &jtis {
        revoke(&broker, "jti", jti).await;
    }
    let first = pb::ListRevocationsRequest {
        page_size: Some(3),
        ..Default::default()
    };
    let mut page = revocations_page(&broker, first.clone()).await.unwrap();
    let key = |r: &pb::Revocation| format!("{}:{}", r.kind, r.value);
    let mut listed: Vec<String> = page.revocations.iter().map(key).collect();
    assert_eq!(
        listed,
        agents[..3]
            .iter()
            .map(|a| format!("agent:{a}"))
            .collect::<Vec<_>>()
    );

    // Between pages: lift (and so delete) one listed and one not listed
    // yet; revoke one before the cursor and one after it.
    let mut admin = broker.admin().await;
    for (kind, value) in [("agent", &agents[1]), ("spiffe-id", &lifted_ids[2])] {
        let lifted = admin
            .unrevoke(pb::UnrevokeRequest {
                kind: kind.into(),
                value: value.clone(),
                reason: "done".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(lifted.expires_at > 0);
    }
    revoke(&broker, "agent", &id("/agent/00")).await;
    revoke(&broker, "jti", "jti-new").await;
    while !page.next_page_token.is_empty() {
        page = revocations_page(
            &broker,
            pb::ListRevocationsRequest {
                page_token: page.next_page_token.clone(),
                ..first.clone()
            },
        )
        .await
        .unwrap();
        assert!(page.revocations.len() <= 3);
        listed.extend(page.revocations.iter().map(key));
    }
    let counts = counts(&listed);
    assert!(counts.values().all(|&n| n == 1), "listed twice: {counts:?}");
    let throughout = agents
        .iter()
        .map(|a| format!("agent:{a}"))
        .chain(jtis.iter().map(|j| format!("jti:{j}")))
        .chain(lifted_ids.iter().map(|s| format!("spiffe-id:{s}")))
        .filter(|k| *k != format!("agent:{}", agents[1]))
        .filter(|k| *k != format!("spiffe-id:{}", lifted_ids[2]));
    for key in throughout {
        assert_eq!(counts.get(key.as_str()), Some(&1), "{key}");
    }
    assert!(counts.contains_key(format!("agent:{}", agents[1]).as_str()));
    assert!(!counts.contains_key(format!("spiffe-id:{}", lifted_ids[2]).as_str()));
    assert!(counts.contains_key("jti:jti-new"), "after the cursor");
    assert!(!counts.contains_key(format!("agent:{}", id("/agent/00")).as_str()));
}

#[tokio::test]
async fn revocation_filters_list_exactly_what_matches() {
    let broker = TestBroker::start().await;
    let billing = id("/billing");
    let agent = id("/agent/1");
    revoke(&broker, "spiffe-id", &billing).await;
    revoke(&broker, "agent", &agent).await;
    let before = broker.clock.now();
    broker.clock.advance(Duration::from_secs(60));
    let since = mayfly::clock::unix_seconds(broker.clock.now());
    assert!(since > mayfly::clock::unix_seconds(before));
    for n in 0..7 {
        revoke(&broker, "jti", &format!("t{n}")).await;
    }
    revoke(&broker, "serial", "0a").await;
    let listed = |request: pb::ListRevocationsRequest| {
        let broker = &broker;
        async move {
            let request = pb::ListRevocationsRequest {
                page_size: Some(2),
                ..request
            };
            all_revocations(broker, request)
                .await
                .into_iter()
                .collect::<BTreeSet<_>>()
        }
    };
    let set = |keys: &[String]| keys.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(listed(Default::default()).await.len(), 10, "no filter");
    let jtis: Vec<String> = (0..7).map(|n| format!("jti:t{n}")).collect();
    assert_eq!(
        listed(pb::ListRevocationsRequest {
            kind: "jti".into(),
            ..Default::default()
        })
        .await,
        set(&jtis)
    );
    assert_eq!(
        listed(pb::ListRevocationsRequest {
            subject: billing.clone(),
            ..Default::default()
        })
        .await,
        set(&[format!("spiffe-id:{billing}")])
    );
    assert_eq!(
        listed(pb::ListRevocationsRequest {
            subject: agent.clone(),
            kind: "agent".into(),
            ..Default::default()
        })
        .await,
        set(&[format!("agent:{agent}")])
    );
    let mut recent = jtis.clone();
    recent.push("serial:a".into());
    assert_eq!(
        listed(pb::ListRevocationsRequest {
            revoked_since: since,
            ..Default::default()
        })
        .await,
        set(&recent)
    );
    // Every revocation here was made over the admin socket by this uid.
    let actor = format!("admin:uid={}", common::my_uid(&broker.data_dir()));
    assert_eq!(
        listed(pb::ListRevocationsRequest {
            actor: actor.clone(),
            ..Default::default()
        })
        .await
        .len(),
        10,
        "{actor}"
    );
    // Negative controls.
    for request in [
        pb::ListRevocationsRequest {
            actor: "admin:uid=4242".into(),
            ..Default::default()
        },
        pb::ListRevocationsRequest {
            kind: "entry".into(),
            ..Default::default()
        },
        pb::ListRevocationsRequest {
            kind: "jti".into(),
            subject: billing.clone(),
            ..Default::default()
        },
        pb::ListRevocationsRequest {
            revoked_since: since + 1,
            ..Default::default()
        },
    ] {
        assert!(listed(request.clone()).await.is_empty(), "{request:?}");
    }
    for (request, field) in [
        (
            pb::ListRevocationsRequest {
                kind: "token".into(),
                ..Default::default()
            },
            "kind",
        ),
        (
            pb::ListRevocationsRequest {
                subject: "billing".into(),
                ..Default::default()
            },
            "subject",
        ),
    ] {
        let refused = revocations_page(&broker, request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains(field), "{refused:?}");
    }
}

#[tokio::test]
async fn malformed_and_foreign_page_tokens_are_invalid_arguments() {
    let broker = TestBroker::start().await;
    for n in 0..3 {
        broker.create_entry(&format!("/w/{n}"), &["db"]).await;
        revoke(&broker, "jti", &format!("t{n}")).await;
    }
    let entries = entries_page(
        &broker,
        pb::ListEntriesRequest {
            page_size: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let revocations = revocations_page(
        &broker,
        pb::ListRevocationsRequest {
            page_size: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Positive controls: each listing's own token goes on.
    let next = entries_page(
        &broker,
        pb::ListEntriesRequest {
            page_size: Some(1),
            page_token: entries.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_ne!(next.entries[0].id, entries.entries[0].id);
    let next = revocations_page(
        &broker,
        pb::ListRevocationsRequest {
            page_size: Some(1),
            page_token: revocations.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_ne!(next.revocations[0].value, revocations.revocations[0].value);

    let mut cut = entries.next_page_token.clone();
    cut.truncate(cut.len() / 2);
    for (what, token) in [
        ("garbage", "hello world".to_owned()),
        ("a cut token", cut),
        ("a token of ListRevocations", revocations.next_page_token),
    ] {
        let refused = entries_page(
            &broker,
            pb::ListEntriesRequest {
                page_token: token,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{what}: {refused:?}");
        assert!(
            refused.message().contains("page_token"),
            "{what}: {refused:?}"
        );
    }
    let refused = revocations_page(
        &broker,
        pb::ListRevocationsRequest {
            page_token: entries.next_page_token,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("entries"), "{refused:?}");
}

#[tokio::test]
async fn a_client_that_sends_no_page_size_gets_a_small_list_whole() {
    let broker = TestBroker::start().await;
    for n in 0..7 {
        broker.create_entry(&format!("/w/{n}"), &["db"]).await;
        revoke(&broker, "jti", &format!("t{n}")).await;
    }
    // What a client built before paging sends: no page_size, no token.
    let entries = entries_page(&broker, pb::ListEntriesRequest::default())
        .await
        .unwrap();
    assert_eq!(entries.entries.len(), 7);
    assert!(entries.next_page_token.is_empty());
    let revocations = revocations_page(&broker, pb::ListRevocationsRequest::default())
        .await
        .unwrap();
    assert_eq!(revocations.revocations.len(), 7);
    assert!(revocations.next_page_token.is_empty());
    // Page size 0 is the default page (500), not "unpaged": the same here,
    // told apart only by size.
    let zero = revocations_page(
        &broker,
        pb::ListRevocationsRequest {
            page_size: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(zero.revocations, revocations.revocations);
}
