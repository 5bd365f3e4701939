#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::policy::{EntrySpec, TtlPolicy};
use mayfly_sdk::TrustDomain;

fn entry(environment: &str, data_class: &str, audiences: &[&str]) -> Entry {
    EntrySpec {
        spiffe_id: Some("spiffe://example.org/w".into()),
        audiences: Some(audiences.iter().map(|a| (*a).to_owned()).collect()),
        owner: Some("o".into()),
        purpose: Some("p".into()),
        environment: Some(environment.into()),
        data_class: Some(data_class.into()),
        ..EntrySpec::default()
    }
    .create(
        &TrustDomain::new("example.org").unwrap(),
        &TtlPolicy::default(),
        0,
    )
    .unwrap()
}

fn spec(environment: &str, data_class: &str) -> AudienceSpec {
    AudienceSpec {
        owner: Some("team-billing".into()),
        environment: Some(environment.into()),
        data_class: Some(data_class.into()),
        description: None,
    }
}

fn record(name: &str, environment: &str, data_class: &str) -> AudienceRecord {
    spec(environment, data_class)
        .create(name, &DataClasses::default(), 10)
        .unwrap()
}

fn audience(name: &str) -> Audience {
    Audience::new(name).unwrap()
}

#[test]
fn data_classes_rank_in_the_configured_order() {
    let classes = DataClasses::default();
    assert_eq!(classes.to_string(), "none < internal < confidential < phi");
    assert_eq!(classes.rank("none"), Some(0));
    assert_eq!(classes.rank("phi"), Some(3));
    assert_eq!(classes.rank("secret"), None);
    let custom = DataClasses::new(vec!["public".into(), "secret".into()]).unwrap();
    assert_eq!(custom.rank("secret"), Some(1));
    assert_eq!(custom.rank("phi"), None);
    for bad in [
        vec![],
        vec!["Public".to_owned()],
        vec!["a".to_owned(), "a".to_owned()],
        vec![String::new()],
    ] {
        assert!(DataClasses::new(bad.clone()).is_err(), "{bad:?}");
    }
}

#[test]
fn audience_records_are_checked_on_create_and_update() {
    let classes = DataClasses::default();
    let created = record("billing", "prod", "internal");
    assert_eq!(created.revision, 1);
    assert_eq!(created.description, "");
    let updated = AudienceSpec {
        data_class: Some("phi".into()),
        description: Some("the billing API".into()),
        ..AudienceSpec::default()
    }
    .update(&created, &classes, 20)
    .unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.updated_at, 20);
    assert_eq!(updated.created_at, 10);
    assert_eq!(updated.data_class, "phi");
    assert_eq!(updated.environment, "prod");

    let unknown = spec("prod", "secret").create("billing", &classes, 0);
    assert!(
        matches!(unknown, Err(AudienceError::UnknownDataClass { ref class, .. }) if class == "secret"),
        "{unknown:?}"
    );
    for (name, spec, field) in [
        ("has space", spec("prod", "none"), "name"),
        ("", spec("prod", "none"), "name"),
        ("a", spec("Prod", "none"), "environment"),
        ("a", spec("prod", "No ne"), "data-class"),
    ] {
        match spec.create(name, &classes, 0) {
            Err(AudienceError::Invalid { field: got, .. }) => assert_eq!(got, field, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let missing = AudienceSpec {
        owner: None,
        ..spec("prod", "none")
    }
    .create("a", &classes, 0);
    assert_eq!(missing, Err(AudienceError::Missing { field: "owner" }));
}

#[test]
fn the_index_answers_registration_and_follows_changes() {
    let index = AudienceIndex::new([record("billing", "prod", "none")]);
    assert!(index.is_registered("billing"));
    assert!(!index.is_registered("ledger"));
    let e = entry("prod", "none", &["billing", "ledger"]);
    assert_eq!(index.unregistered_of(&e), vec!["ledger".to_owned()]);
    index.upsert(record("ledger", "prod", "none"));
    assert!(index.unregistered_of(&e).is_empty());
    index.remove("billing");
    assert_eq!(index.unregistered_of(&e), vec!["billing".to_owned()]);
    index.replace_all([]);
    assert!(index.all().is_empty());
}

#[test]
fn minting_checks_environment_class_and_registration() {
    let index = AudienceIndex::new([
        record("billing", "prod", "internal"),
        record("staging-api", "staging", "none"),
        record("records", "prod", "phi"),
    ]);
    let policy = AudiencePolicy::default();
    let worker = entry("prod", "confidential", &["billing"]);

    // Positive controls: same environment, class at or below clearance,
    // unregistered while allowed.
    check_mint(&worker, &audience("billing"), &index, &policy).unwrap();
    check_mint(&worker, &audience("unknown"), &index, &policy).unwrap();

    let refusal = check_mint(&worker, &audience("staging-api"), &index, &policy).unwrap_err();
    assert!(
        matches!(refusal, AudienceRefusal::EnvironmentMismatch { ref entry_env, ref audience_env, .. }
            if entry_env == "prod" && audience_env == "staging"),
        "{refusal:?}"
    );
    let refusal = check_mint(&worker, &audience("records"), &index, &policy).unwrap_err();
    let message = refusal.to_string();
    assert!(
        message.contains("\"phi\"")
            && message.contains("\"confidential\"")
            && message.contains("none < internal < confidential < phi"),
        "{message}"
    );

    // A class outside the order fails closed, naming the side.
    let odd = entry("prod", "secret", &["billing"]);
    let refusal = check_mint(&odd, &audience("billing"), &index, &policy).unwrap_err();
    assert!(
        matches!(refusal, AudienceRefusal::UnknownDataClass { ref class, ref whose, .. }
            if class == "secret" && whose.starts_with("entry ")),
        "{refusal:?}"
    );
    let narrower = AudiencePolicy {
        data_classes: DataClasses::new(vec!["none".into(), "confidential".into()]).unwrap(),
        require_registered: false,
    };
    let refusal = check_mint(&worker, &audience("billing"), &index, &narrower).unwrap_err();
    assert!(
        matches!(refusal, AudienceRefusal::UnknownDataClass { ref class, ref whose, .. }
            if class == "internal" && whose.starts_with("audience ")),
        "{refusal:?}"
    );

    let strict = AudiencePolicy {
        require_registered: true,
        ..AudiencePolicy::default()
    };
    check_mint(&worker, &audience("billing"), &index, &strict).unwrap();
    let refusal = check_mint(&worker, &audience("unknown"), &index, &strict).unwrap_err();
    assert!(
        refusal.to_string().contains("mayfly audience create"),
        "{refusal}"
    );
}

#[test]
fn an_entry_conflicts_only_with_registered_audiences() {
    let index = AudienceIndex::new([
        record("billing", "prod", "internal"),
        record("records", "prod", "phi"),
    ]);
    let classes = DataClasses::default();
    check_entry(
        &entry("prod", "internal", &["billing", "other"]),
        &index,
        &classes,
    )
    .unwrap();
    assert!(matches!(
        check_entry(
            &entry("staging", "internal", &["billing"]),
            &index,
            &classes
        ),
        Err(AudienceRefusal::EnvironmentMismatch { .. })
    ));
    assert!(matches!(
        check_entry(&entry("prod", "internal", &["records"]), &index, &classes),
        Err(AudienceRefusal::AboveClearance { .. })
    ));
}
