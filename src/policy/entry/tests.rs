use super::*;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn spec() -> EntrySpec {
    EntrySpec {
        spiffe_id: Some("spiffe://example.org/billing/api".into()),
        audiences: Some(vec!["payments".into()]),
        owner: Some("team-billing@example.org".into()),
        purpose: Some("bills patients".into()),
        ..EntrySpec::default()
    }
}

#[test]
fn create_applies_defaults() {
    let entry = spec().create(&td(), &TtlPolicy::default(), 1_000).unwrap();
    assert_eq!(entry.jwt_ttl_seconds, 300);
    assert_eq!(entry.x509_ttl_seconds, 900);
    assert_eq!(entry.expires_at, 1_000 + 90 * 86_400);
    assert_eq!(entry.kinds, vec![CredentialKind::Jwt, CredentialKind::X509]);
    assert_eq!(entry.revision, 1);
}

#[test]
fn create_refuses_missing_governance_fields() {
    let ok = spec().create(&td(), &TtlPolicy::default(), 0);
    assert!(ok.is_ok());
    let no_owner = EntrySpec {
        owner: None,
        ..spec()
    };
    assert_eq!(
        no_owner.create(&td(), &TtlPolicy::default(), 0),
        Err(EntryError::Missing { field: "owner" })
    );
    let no_purpose = EntrySpec {
        purpose: Some("  ".into()),
        ..spec()
    };
    assert_eq!(
        no_purpose.create(&td(), &TtlPolicy::default(), 0),
        Err(EntryError::Missing { field: "purpose" })
    );
}

#[test]
fn ttl_cap_is_enforced() {
    let ok = EntrySpec {
        jwt_ttl_seconds: Some(3600),
        ..spec()
    };
    assert!(ok.create(&td(), &TtlPolicy::default(), 0).is_ok());
    let long = EntrySpec {
        jwt_ttl_seconds: Some(3601),
        ..spec()
    };
    assert!(matches!(
        long.create(&td(), &TtlPolicy::default(), 0),
        Err(EntryError::TtlTooLong {
            asked: 3601,
            max: 3600,
            ..
        })
    ));
    let lower = TtlPolicy {
        x509_max: Duration::from_secs(600),
        ..TtlPolicy::default()
    };
    let over = EntrySpec {
        x509_ttl_seconds: Some(601),
        ..spec()
    };
    assert!(matches!(
        over.create(&td(), &lower, 0),
        Err(EntryError::TtlTooLong {
            asked: 601,
            max: 600,
            ..
        })
    ));
}

#[test]
fn foreign_trust_domain_and_reserved_path_refused() {
    let foreign = EntrySpec {
        spiffe_id: Some("spiffe://other.org/x".into()),
        ..spec()
    };
    assert!(foreign.create(&td(), &TtlPolicy::default(), 0).is_err());
    let reserved = EntrySpec {
        spiffe_id: Some("spiffe://example.org/mayfly/server".into()),
        ..spec()
    };
    assert!(reserved.create(&td(), &TtlPolicy::default(), 0).is_err());
}

#[test]
fn selectors_and_labels_parse_strictly() {
    assert!(Selector::parse("k8s:ns:billing").is_ok());
    assert_eq!(Selector::parse("k8s:ns:billing").unwrap().kind(), "k8s");
    assert!(Selector::parse("K8s:ns").is_err());
    assert!(Selector::parse("k8s:").is_err());
    assert!(Selector::parse("nocolon").is_err());
    assert!(Selector::parse("k8s:has space").is_err());
    assert!(parse_label("environment", "prod").is_ok());
    assert!(parse_label("environment", "Prod").is_err());
    assert!(parse_dns_name("api.example.org").is_ok());
    assert!(parse_dns_name("API.example.org").is_err());
    assert!(parse_dns_name("a..b").is_err());
}

#[test]
fn update_keeps_unset_fields_and_bumps_revision() {
    let entry = spec().create(&td(), &TtlPolicy::default(), 0).unwrap();
    let patch = EntrySpec {
        purpose: Some("new purpose".into()),
        ..EntrySpec::default()
    };
    let updated = patch
        .update(&entry, &td(), &TtlPolicy::default(), 50)
        .unwrap();
    assert_eq!(updated.purpose, "new purpose");
    assert_eq!(updated.owner, entry.owner);
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.updated_at, 50);
    let drop_audiences = EntrySpec {
        audiences: Some(vec![]),
        ..EntrySpec::default()
    };
    assert!(
        drop_audiences
            .update(&entry, &td(), &TtlPolicy::default(), 50)
            .is_err()
    );
}

#[test]
fn parent_is_parsed_checked_and_clearable() {
    let child = EntrySpec {
        parent_id: Some("spiffe://example.org/agent/node-1".into()),
        ..spec()
    };
    let entry = child.create(&td(), &TtlPolicy::default(), 0).unwrap();
    assert_eq!(
        entry.parent_id.as_ref().unwrap().as_str(),
        "spiffe://example.org/agent/node-1"
    );
    let foreign = EntrySpec {
        parent_id: Some("spiffe://other.org/agent".into()),
        ..spec()
    };
    assert!(foreign.create(&td(), &TtlPolicy::default(), 0).is_err());
    let own = EntrySpec {
        parent_id: Some("spiffe://example.org/billing/api".into()),
        ..spec()
    };
    assert!(own.create(&td(), &TtlPolicy::default(), 0).is_err());
    let clear = EntrySpec {
        parent_id: Some(String::new()),
        ..EntrySpec::default()
    };
    assert_eq!(
        clear
            .update(&entry, &td(), &TtlPolicy::default(), 1)
            .unwrap()
            .parent_id,
        None
    );
}

#[test]
fn unique_jti_defaults_off_is_kept_on_update_and_can_be_cleared() {
    let entry = spec().create(&td(), &TtlPolicy::default(), 0).unwrap();
    assert!(!entry.unique_jti, "reuse is allowed by default");
    let on = EntrySpec {
        unique_jti: Some(true),
        ..EntrySpec::default()
    }
    .update(&entry, &td(), &TtlPolicy::default(), 1)
    .unwrap();
    assert!(on.unique_jti);
    assert_eq!(on.revision, entry.revision + 1);
    let untouched = EntrySpec {
        purpose: Some("other".into()),
        ..EntrySpec::default()
    }
    .update(&on, &td(), &TtlPolicy::default(), 2)
    .unwrap();
    assert!(untouched.unique_jti, "not given: unchanged");
    let off = EntrySpec {
        unique_jti: Some(false),
        ..EntrySpec::default()
    }
    .update(&untouched, &td(), &TtlPolicy::default(), 3)
    .unwrap();
    assert!(!off.unique_jti);
}

#[test]
fn an_entry_stored_before_unique_jti_existed_still_loads() {
    let entry = spec().create(&td(), &TtlPolicy::default(), 0).unwrap();
    let mut stored = serde_json::to_value(&entry).unwrap();
    stored.as_object_mut().unwrap().remove("unique_jti");
    let loaded: Entry = serde_json::from_value(stored).unwrap();
    assert_eq!(loaded, entry);
    // Positive control: the field is stored when present.
    let with = Entry {
        unique_jti: true,
        ..entry
    };
    let round: Entry = serde_json::from_value(serde_json::to_value(&with).unwrap()).unwrap();
    assert!(round.unique_jti);
}

#[test]
fn expiry_must_be_in_the_future() {
    let past = EntrySpec {
        expires_at: Some(10),
        ..spec()
    };
    assert!(past.create(&td(), &TtlPolicy::default(), 10).is_err());
    let future = EntrySpec {
        expires_at: Some(11),
        ..spec()
    };
    let entry = future.create(&td(), &TtlPolicy::default(), 10).unwrap();
    assert!(!entry.is_expired(10));
    assert!(entry.is_expired(11));
}

#[test]
fn disable_and_enable_are_new_revisions_and_refuse_the_wrong_state() {
    let entry = spec().create(&td(), &TtlPolicy::default(), 0).unwrap();
    let disabled = entry.disabled("admin:uid=0", "  owner left  ", 5).unwrap();
    assert_eq!(disabled.revision, entry.revision + 1);
    assert_eq!(disabled.updated_at, 5);
    let state = disabled.disabled.as_deref().unwrap();
    assert_eq!((state.at, state.by.as_str()), (5, "admin:uid=0"));
    assert_eq!(state.reason, "owner left", "trimmed");
    assert!(matches!(
        disabled.disabled("admin:uid=0", "again", 6),
        Err(EntryError::State { .. })
    ));
    let enabled = disabled.enabled("owner back", 7).unwrap();
    assert_eq!(enabled.disabled, None);
    assert_eq!(enabled.revision, entry.revision + 2);
    assert!(matches!(
        enabled.enabled("again", 8),
        Err(EntryError::State { .. })
    ));
    // A reason is required and bounded, on both ways.
    assert_eq!(
        entry.disabled("admin", " ", 1),
        Err(EntryError::Missing { field: "reason" })
    );
    assert!(matches!(
        entry.disabled("admin", &"x".repeat(1025), 1),
        Err(EntryError::Invalid {
            field: "reason",
            ..
        })
    ));
    assert!(matches!(
        disabled.enabled("", 1),
        Err(EntryError::Missing { field: "reason" })
    ));
}

#[test]
fn an_entry_stored_before_governance_existed_still_loads() {
    let entry = spec().create(&td(), &TtlPolicy::default(), 0).unwrap();
    let mut stored = serde_json::to_value(&entry).unwrap();
    stored.as_object_mut().unwrap().remove("disabled");
    let loaded: Entry = serde_json::from_value(stored).unwrap();
    assert_eq!(loaded, entry);
    // Positive control: the state is stored when present.
    let disabled = entry.disabled("admin", "why", 1).unwrap();
    let round: Entry = serde_json::from_value(serde_json::to_value(&disabled).unwrap()).unwrap();
    assert_eq!(round.disabled.unwrap().reason, "why");
}

#[test]
fn a_review_is_due_one_interval_after_the_last_or_the_creation() {
    let default = Duration::from_secs(100);
    let entry = spec().create(&td(), &TtlPolicy::default(), 1_000).unwrap();
    assert_eq!(entry.review_due_at(default), Some(1_100));
    let reviewed = entry.reviewed("admin", " checked ", 1_050).unwrap();
    assert_eq!(reviewed.last_review.as_ref().unwrap().note, "checked");
    assert_eq!(reviewed.review_due_at(default), Some(1_150));
    assert_eq!(reviewed.revision, entry.revision + 1);
    let own = Entry {
        review_every_seconds: Some(10),
        ..reviewed.clone()
    };
    assert_eq!(own.review_due_at(default), Some(1_060));
    let never = Entry {
        review_every_seconds: Some(0),
        ..reviewed
    };
    assert_eq!(never.review_due_at(default), None);
    assert_eq!(entry.review_due_at(Duration::ZERO), None);
    assert_eq!(
        entry.reviewed("admin", "", 1),
        Err(EntryError::Missing { field: "note" })
    );
}
