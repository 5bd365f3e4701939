//! The owners' digest: for each owner, what needs them — identities expiring soon, reviews
//! overdue, dormant identities, and identities the governance sweeper disabled. The same
//! digest answers `mayfly report owners` (the `OwnerDigests` RPC) and goes to the alert
//! webhook every `[alerts] owner_digest_every`.
//!
//! Built from [`super::standing`], so the digest never disagrees with the
//! inventory report or the sweeper. An owner with nothing to do gets no digest. Each list
//! is cut at [`MAX_ITEMS`] (the count of the rest is kept), so a digest stays small enough
//! for a webhook body and an RPC answer whatever the registry holds.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{EntryState, GOVERNANCE_ACTOR, standing};
use crate::clock::rfc3339;
use crate::config::GovernanceConfig;
use crate::mint::UsageTracker;
use crate::policy::{Entry, EntryId, EntryIndex};

/// Items listed per list of one digest, at most.
pub const MAX_ITEMS: usize = 200;

/// One identity in a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestItem {
    /// The entry's id.
    pub entry_id: String,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// Its environment.
    pub environment: String,
    /// The date that matters (unix seconds): when it expires, when its review was due,
    /// since when it is dormant, when it was disabled.
    pub at: i64,
    /// What the owner reads, with the date and the way out.
    pub detail: String,
}

/// One list of a digest: at most [`MAX_ITEMS`], and how many more there are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DigestList {
    /// The items, earliest date first.
    pub items: Vec<DigestItem>,
    /// Items left out beyond [`MAX_ITEMS`].
    pub omitted: u64,
}

impl DigestList {
    fn push(&mut self, item: DigestItem) {
        self.items.push(item);
    }

    /// Sorts by date and cuts at [`MAX_ITEMS`].
    fn finish(&mut self) {
        self.items
            .sort_by(|a, b| (a.at, &a.entry_id).cmp(&(b.at, &b.entry_id)));
        if self.items.len() > MAX_ITEMS {
            self.omitted = (self.items.len() - MAX_ITEMS) as u64;
            self.items.truncate(MAX_ITEMS);
        }
    }

    /// How many items, the omitted included.
    pub fn total(&self) -> u64 {
        self.items.len() as u64 + self.omitted
    }
}

/// What one owner should look at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OwnerDigest {
    /// The owner, as entries name it.
    pub owner: String,
    /// Identities that expire within [`super::EXPIRING_WITHIN`].
    pub expiring: DigestList,
    /// Identities whose owner review is overdue.
    pub review_overdue: DigestList,
    /// Identities that minted nothing for `[governance] dormant_after` and are still enabled.
    pub dormant: DigestList,
    /// Identities the governance sweeper disabled (dormant, expired, review overdue).
    pub disabled: DigestList,
}

impl OwnerDigest {
    /// Whether there is nothing for the owner to do.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
    }

    /// Each list's name and size, for logs and audit records.
    pub fn counts(&self) -> [(&'static str, u64); 4] {
        [
            ("expiring", self.expiring.total()),
            ("review_overdue", self.review_overdue.total()),
            ("dormant", self.dormant.total()),
            ("disabled", self.disabled.total()),
        ]
    }
}

/// [`owner_digests`] of the broker's current entries and usage.
pub fn current(
    entries: &EntryIndex,
    usage: &UsageTracker,
    now: i64,
    config: &GovernanceConfig,
    owner: Option<&str>,
) -> Vec<OwnerDigest> {
    let entries = entries.all();
    owner_digests(
        entries.iter().map(AsRef::as_ref),
        now,
        config,
        |id| usage.usage(id).0,
        owner,
    )
}

/// The digest of every owner with something to do at `now` (only `owner`'s when given),
/// sorted by owner. `last_minted` gives an entry's last mint (0: never).
pub fn owner_digests<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    now: i64,
    config: &GovernanceConfig,
    last_minted: impl Fn(&EntryId) -> i64,
    owner: Option<&str>,
) -> Vec<OwnerDigest> {
    let mut digests: BTreeMap<&str, OwnerDigest> = BTreeMap::new();
    for entry in entries {
        if owner.is_some_and(|wanted| wanted != entry.owner) {
            continue;
        }
        let minted = last_minted(&entry.id);
        let states = standing(entry, now, config, minted, false);
        let digest = digests
            .entry(entry.owner.as_str())
            .or_insert_with(|| OwnerDigest {
                owner: entry.owner.clone(),
                ..OwnerDigest::default()
            });
        let item = |at: i64, detail: String| DigestItem {
            entry_id: entry.id.to_string(),
            spiffe_id: entry.spiffe_id.to_string(),
            environment: entry.environment.clone(),
            at,
            detail,
        };
        if let Some(disabled) = &entry.disabled {
            if disabled.by == GOVERNANCE_ACTOR {
                digest.disabled.push(item(
                    disabled.at,
                    format!(
                        "disabled at {}: {}; `mayfly entry enable {} --reason ...` once it \
                         is needed again",
                        rfc3339(disabled.at),
                        disabled.reason,
                        entry.id
                    ),
                ));
            }
            // A disabled identity mints nothing: only how it came to be matters.
            continue;
        }
        for state in states {
            match state {
                EntryState::Expiring => digest.expiring.push(item(
                    entry.expires_at,
                    format!(
                        "expires at {}; extend it with `mayfly entry update {} --expires ...` \
                         if it is still needed",
                        rfc3339(entry.expires_at),
                        entry.id
                    ),
                )),
                EntryState::ReviewOverdue => {
                    let due = entry.review_due_at(config.review_every).unwrap_or(now);
                    digest.review_overdue.push(item(
                        due,
                        format!(
                            "review due since {}; `mayfly entry review {} --note ...`",
                            rfc3339(due),
                            entry.id
                        ),
                    ));
                }
                EntryState::Dormant => {
                    let since = super::dormant_since(entry, minted);
                    let what = if minted > 0 {
                        "nothing minted since"
                    } else {
                        "never used since its creation at"
                    };
                    digest.dormant.push(item(
                        since,
                        format!(
                            "{what} {}; disable it (`mayfly entry disable {} --reason ...`) \
                             if it is no longer needed",
                            rfc3339(since),
                            entry.id
                        ),
                    ));
                }
                EntryState::BreakglassReviewOverdue => {
                    for grant in entry.unreviewed_grants() {
                        digest.review_overdue.push(item(
                            entry.updated_at,
                            format!(
                                "break-glass grant {grant} ended without its post-incident \
                                 review; `mayfly breakglass review {grant} --note ...`"
                            ),
                        ));
                    }
                }
                EntryState::Revoked
                | EntryState::Breakglass
                | EntryState::Disabled
                | EntryState::Expired
                | EntryState::Active => {}
            }
        }
    }
    digests
        .into_values()
        .filter_map(|mut digest| {
            for list in [
                &mut digest.expiring,
                &mut digest.review_overdue,
                &mut digest.dormant,
                &mut digest.disabled,
            ] {
                list.finish();
            }
            (!digest.is_empty()).then_some(digest)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mayfly_sdk::TrustDomain;

    use super::*;
    use crate::policy::{Disabled, EntrySpec, TtlPolicy};

    const DAY: i64 = 86_400;
    const CREATED: i64 = 1_800_000_000;

    fn entry(path: &str, owner: &str, expires_in_days: i64) -> Entry {
        EntrySpec {
            spiffe_id: Some(format!("spiffe://example.org{path}")),
            audiences: Some(vec!["a".into()]),
            owner: Some(owner.into()),
            purpose: Some("p".into()),
            environment: Some("prod".into()),
            data_class: Some("phi".into()),
            expires_at: Some(CREATED + expires_in_days * DAY),
            ..EntrySpec::default()
        }
        .create(
            &TrustDomain::new("example.org").unwrap(),
            &TtlPolicy::default(),
            CREATED,
        )
        .unwrap()
    }

    fn config() -> GovernanceConfig {
        GovernanceConfig {
            dormant_after: Some(Duration::from_secs(30 * 86_400)),
            ..GovernanceConfig::default()
        }
    }

    fn ids(list: &DigestList) -> Vec<&str> {
        list.items.iter().map(|i| i.spiffe_id.as_str()).collect()
    }

    #[test]
    fn each_owner_hears_of_their_own_identities_only_and_the_idle_hear_nothing() {
        let now = CREATED + 40 * DAY;
        let expiring = entry("/billing/expiring", "billing", 50);
        let used = entry("/billing/used", "billing", 365);
        let dormant = entry("/billing/idle", "billing", 365);
        let fine = entry("/reports/api", "reports", 365);
        let mut by_sweeper = entry("/billing/old", "billing", 365);
        by_sweeper.disabled = Some(Box::new(Disabled {
            at: CREATED + 31 * DAY,
            by: GOVERNANCE_ACTOR.into(),
            reason: "dormant: never minted".into(),
        }));
        let mut by_operator = entry("/billing/paused", "billing", 365);
        by_operator.disabled = Some(Box::new(Disabled {
            at: CREATED + DAY,
            by: "admin:alice".into(),
            reason: "paused".into(),
        }));
        let all = [&expiring, &used, &dormant, &fine, &by_sweeper, &by_operator];
        let last_minted = |id: &EntryId| {
            if *id == used.id || *id == expiring.id || *id == fine.id {
                now - DAY
            } else {
                0
            }
        };
        let digests = owner_digests(all, now, &config(), last_minted, None);
        // "reports" has nothing to do: no digest.
        assert_eq!(digests.len(), 1, "{digests:#?}");
        let billing = &digests[0];
        assert_eq!(billing.owner, "billing");
        assert_eq!(
            ids(&billing.expiring),
            ["spiffe://example.org/billing/expiring"]
        );
        assert_eq!(ids(&billing.dormant), ["spiffe://example.org/billing/idle"]);
        assert_eq!(ids(&billing.disabled), ["spiffe://example.org/billing/old"]);
        assert!(billing.review_overdue.items.is_empty());
        assert!(billing.dormant.items[0].detail.contains("never used"));
        assert!(
            billing.expiring.items[0]
                .detail
                .contains(expiring.id.as_str())
        );

        // Fifty days later every enabled billing identity is overdue for review.
        let later = owner_digests(
            all,
            CREATED + 90 * DAY,
            &config(),
            last_minted,
            Some("billing"),
        );
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].review_overdue.total(), 3, "{later:#?}");
        assert!(owner_digests(all, now, &config(), last_minted, Some("reports")).is_empty());
    }

    #[test]
    fn a_long_list_is_cut_and_says_how_many_were_left_out() {
        let entries: Vec<Entry> = (0..MAX_ITEMS + 5)
            .map(|i| entry(&format!("/svc/{i}"), "big", 10))
            .collect();
        let digests = owner_digests(&entries, CREATED, &GovernanceConfig::default(), |_| 0, None);
        assert_eq!(digests[0].expiring.items.len(), MAX_ITEMS);
        assert_eq!(digests[0].expiring.omitted, 5);
        assert_eq!(digests[0].expiring.total(), (MAX_ITEMS + 5) as u64);
    }
}
