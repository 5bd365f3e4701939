//! [`EntryFilter`]: which entries an operator's listing asks for.

use mayfly_sdk::SpiffeId;

use super::Entry;

/// What `ListEntries` narrows the list to. Every field that is set must
/// match; one left `None` matches every entry, so the default matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    /// The owner, exactly.
    pub owner: Option<String>,
    /// The environment, exactly.
    pub environment: Option<String>,
    /// The data class, exactly.
    pub data_class: Option<String>,
    /// A prefix of the SPIFFE ID, compared as text: `spiffe://td/billing`
    /// also matches `spiffe://td/billing-eu/api`.
    pub spiffe_id_prefix: Option<String>,
    /// The agent the entry is registered under.
    pub parent_id: Option<SpiffeId>,
}

impl EntryFilter {
    /// Whether `entry` passes every filter that is set.
    pub fn matches(&self, entry: &Entry) -> bool {
        let equal =
            |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        equal(&self.owner, &entry.owner)
            && equal(&self.environment, &entry.environment)
            && equal(&self.data_class, &entry.data_class)
            && self
                .spiffe_id_prefix
                .as_deref()
                .is_none_or(|prefix| entry.spiffe_id.as_str().starts_with(prefix))
            && self
                .parent_id
                .as_ref()
                .is_none_or(|parent| entry.parent_id.as_ref() == Some(parent))
    }
}

#[cfg(test)]
mod tests {
    use mayfly_sdk::TrustDomain;

    use super::*;
    use crate::policy::{EntrySpec, TtlPolicy};

    fn entry(path: &str, owner: &str, environment: &str, parent: Option<&str>) -> Entry {
        EntrySpec {
            spiffe_id: Some(format!("spiffe://example.org{path}")),
            audiences: Some(vec!["a".into()]),
            owner: Some(owner.into()),
            purpose: Some("p".into()),
            environment: Some(environment.into()),
            data_class: Some("phi".into()),
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
    fn every_filter_that_is_set_must_match() {
        let billing = entry("/billing/api", "team-billing", "prod", Some("/agent/1"));
        let billing_eu = entry("/billing-eu/api", "team-billing", "staging", None);
        let reports = entry("/reports", "team-reports", "prod", Some("/agent/2"));
        let all = [&billing, &billing_eu, &reports];
        let passing = |filter: EntryFilter| -> Vec<String> {
            all.iter()
                .filter(|e| filter.matches(e))
                .map(|e| e.spiffe_id.path().to_owned())
                .collect()
        };
        assert_eq!(passing(EntryFilter::default()).len(), 3, "no filter, all");
        let owner = EntryFilter {
            owner: Some("team-billing".into()),
            ..EntryFilter::default()
        };
        assert_eq!(passing(owner.clone()), ["/billing/api", "/billing-eu/api"]);
        assert_eq!(
            passing(EntryFilter {
                environment: Some("prod".into()),
                ..owner
            }),
            ["/billing/api"],
            "filters combine"
        );
        // A prefix is text: without the slash it reaches the neighbour too.
        let prefix = |p: &str| EntryFilter {
            spiffe_id_prefix: Some(format!("spiffe://example.org{p}")),
            ..EntryFilter::default()
        };
        assert_eq!(
            passing(prefix("/billing")),
            ["/billing/api", "/billing-eu/api"]
        );
        assert_eq!(passing(prefix("/billing/")), ["/billing/api"]);
        let parent = EntryFilter {
            parent_id: Some("spiffe://example.org/agent/2".parse().unwrap()),
            ..EntryFilter::default()
        };
        assert_eq!(passing(parent), ["/reports"]);
        let nobody = EntryFilter {
            data_class: Some("none".into()),
            ..EntryFilter::default()
        };
        assert!(passing(nobody).is_empty());
    }
}
