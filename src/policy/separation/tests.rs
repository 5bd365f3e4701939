use mayfly_sdk::TrustDomain;

use super::*;
use crate::policy::{EntrySpec, TtlPolicy};

fn entry(path: &str, environment: &str, parent: Option<&str>) -> Entry {
    EntrySpec {
        spiffe_id: Some(format!("spiffe://example.org{path}")),
        audiences: Some(vec!["a".into()]),
        owner: Some("team".into()),
        purpose: Some("p".into()),
        environment: Some(environment.into()),
        parent_id: parent.map(|p| format!("spiffe://example.org{p}")),
        ..EntrySpec::default()
    }
    .create(
        &TrustDomain::new("example.org").unwrap(),
        &TtlPolicy::default(),
        0,
    )
    .unwrap()
}

#[test]
fn a_workload_must_be_in_its_agents_environment() {
    let agent = entry("/agent/test-1", "test", None);
    let index = EntryIndex::new([agent.clone()]);
    // Positive control: same environment passes.
    assert_eq!(
        check_registration(&entry("/web", "test", Some("/agent/test-1")), &index),
        Ok(())
    );
    let prod = entry("/billing", "prod", Some("/agent/test-1"));
    let error = check_registration(&prod, &index).unwrap_err();
    assert!(
        matches!(&*error, SeparationError::ParentEnvironment { agent_entry_id, .. } if *agent_entry_id == agent.id),
        "{error:?}"
    );
    let message = error.to_string();
    for needle in [
        "\"prod\"",
        "\"test\"",
        prod.id.as_str(),
        agent.id.as_str(),
        "spiffe://example.org/billing",
        "spiffe://example.org/agent/test-1",
    ] {
        assert!(message.contains(needle), "{message} lacks {needle}");
    }
}

#[test]
fn a_workload_whose_agent_is_not_registered_yet_is_accepted() {
    let index = EntryIndex::new([entry("/agent/other", "test", None)]);
    assert_eq!(
        check_registration(&entry("/billing", "prod", Some("/agent/later")), &index),
        Ok(())
    );
}

#[test]
fn an_agent_must_be_in_its_workloads_environment() {
    let agent = entry("/agent/1", "prod", None);
    let mut workloads: Vec<Entry> = (0..7)
        .map(|i| entry(&format!("/w/{i}"), "prod", Some("/agent/1")))
        .collect();
    // Positive control: the agent (created after its workloads) matches them.
    let index = EntryIndex::new(workloads.clone());
    assert_eq!(check_registration(&agent, &index), Ok(()));

    workloads.push(entry("/w/other", "staging", Some("/agent/1")));
    let index = EntryIndex::new(workloads.iter().cloned().chain([agent.clone()]));
    let mut moved = agent.clone();
    moved.environment = "staging".into();
    let error = check_registration(&moved, &index).unwrap_err();
    let SeparationError::ChildrenEnvironment {
        count, examples, ..
    } = &*error
    else {
        panic!("{error:?}")
    };
    assert_eq!(*count, 7, "the seven prod workloads differ from staging");
    assert_eq!(examples.len(), MAX_NAMED, "a few are named");
    let message = error.to_string();
    assert!(message.contains("and 2 more"), "{message}");
    assert!(message.contains(agent.id.as_str()), "{message}");
    assert!(message.contains("\"staging\""), "{message}");
    assert!(message.contains("\"prod\""), "{message}");
    assert!(message.contains("spiffe://example.org/w/0"), "{message}");
}

#[test]
fn only_changes_of_environment_parent_or_spiffe_id_are_checked() {
    let current = entry("/w", "prod", Some("/agent/1"));
    assert!(separation_relevant(None, &current), "a new entry is");
    let mut owner = current.clone();
    owner.owner = "other-team".into();
    assert!(!separation_relevant(Some(&current), &owner));
    let mut environment = current.clone();
    environment.environment = "test".into();
    assert!(separation_relevant(Some(&current), &environment));
    let mut parent = current.clone();
    parent.parent_id = None;
    assert!(separation_relevant(Some(&current), &parent));
    let mut renamed = current.clone();
    renamed.spiffe_id = mayfly_sdk::SpiffeId::parse("spiffe://example.org/w2").unwrap();
    assert!(separation_relevant(Some(&current), &renamed));
}
