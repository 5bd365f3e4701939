//! An entry's standing at one moment: which governance states apply to it.
//! The one definition the inventory report, the owner digest and the
//! sweeper share, so that they never disagree about an entry.

use std::fmt;
use std::time::Duration;

use crate::config::GovernanceConfig;
use crate::policy::Entry;

/// An entry that expires within this is reported as expiring.
pub const EXPIRING_WITHIN: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// One governance state of an entry. An entry may be in several at once
/// (expiring and review overdue); [`EntryState::ALL`] is their order of
/// severity, the order [`standing`] lists them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryState {
    /// A revocation of the entry, of its SPIFFE ID or of its parent agent
    /// is in force: it mints nothing the revocation covers.
    Revoked,
    /// A break-glass grant is in force on it: wider than registered.
    Breakglass,
    /// An operator or the sweeper disabled it.
    Disabled,
    /// Its own expiry date has passed.
    Expired,
    /// No mint for `[governance] dormant_after` (or since its creation).
    Dormant,
    /// A break-glass grant on it ended without its post-incident review.
    BreakglassReviewOverdue,
    /// Its owner review is due and not done.
    ReviewOverdue,
    /// It expires within [`EXPIRING_WITHIN`].
    Expiring,
    /// None of the above.
    Active,
}

impl EntryState {
    /// Every state, most severe first.
    pub const ALL: [EntryState; 9] = [
        EntryState::Revoked,
        EntryState::Breakglass,
        EntryState::Disabled,
        EntryState::Expired,
        EntryState::Dormant,
        EntryState::BreakglassReviewOverdue,
        EntryState::ReviewOverdue,
        EntryState::Expiring,
        EntryState::Active,
    ];

    /// The wire and CLI name: `revoked`, `breakglass`, `disabled`,
    /// `expired`, `dormant`, `breakglass-review-overdue`, `review-overdue`,
    /// `expiring`, `active`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Revoked => "revoked",
            EntryState::Breakglass => "breakglass",
            EntryState::Disabled => "disabled",
            EntryState::Expired => "expired",
            EntryState::Dormant => "dormant",
            EntryState::BreakglassReviewOverdue => "breakglass-review-overdue",
            EntryState::ReviewOverdue => "review-overdue",
            EntryState::Expiring => "expiring",
            EntryState::Active => "active",
        }
    }

    /// Parses a name [`as_str`](Self::as_str) gives.
    ///
    /// # Errors
    ///
    /// The text of the error names every state.
    pub fn parse(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == value)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("{value:?} is not one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for EntryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Since when an entry's dormancy counts: its last mint, or its creation
/// if it never minted (`last_minted` 0).
pub fn dormant_since(entry: &Entry, last_minted: i64) -> i64 {
    if last_minted > 0 {
        last_minted
    } else {
        entry.created_at
    }
}

/// Whether `entry` is dormant at `now` under `config` (never when
/// `dormant_after` is off).
pub fn is_dormant(entry: &Entry, last_minted: i64, now: i64, config: &GovernanceConfig) -> bool {
    config.dormant_after.is_some_and(|after| {
        let limit = i64::try_from(after.as_secs()).unwrap_or(i64::MAX);
        now.saturating_sub(dormant_since(entry, last_minted)) >= limit
    })
}

/// Every state `entry` is in at `now`, most severe first; `[Active]` when
/// none applies. `last_minted` is its usage (0: never); `revoked` whether a
/// revocation of the entry, its SPIFFE ID or its parent agent is in force,
/// which the caller knows from its revocation set.
pub fn standing(
    entry: &Entry,
    now: i64,
    config: &GovernanceConfig,
    last_minted: i64,
    revoked: bool,
) -> Vec<EntryState> {
    let expiring_within = i64::try_from(EXPIRING_WITHIN.as_secs()).unwrap_or(i64::MAX);
    let mut states = Vec::new();
    if revoked {
        states.push(EntryState::Revoked);
    }
    if entry.grant_in_force(now).is_some() {
        states.push(EntryState::Breakglass);
    }
    if entry.disabled.is_some() {
        states.push(EntryState::Disabled);
    }
    if entry.is_expired(now) {
        states.push(EntryState::Expired);
    }
    if is_dormant(entry, last_minted, now, config) {
        states.push(EntryState::Dormant);
    }
    if !entry.unreviewed_grants().is_empty() {
        states.push(EntryState::BreakglassReviewOverdue);
    }
    if entry
        .review_due_at(config.review_every)
        .is_some_and(|due| now >= due)
    {
        states.push(EntryState::ReviewOverdue);
    }
    if !entry.is_expired(now) && entry.expires_at.saturating_sub(now) <= expiring_within {
        states.push(EntryState::Expiring);
    }
    if states.is_empty() {
        states.push(EntryState::Active);
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Disabled, EntrySpec, Review, TtlPolicy};
    use mayfly_sdk::TrustDomain;

    const DAY: i64 = 86_400;
    const CREATED: i64 = 1_800_000_000;

    fn entry(expires_in_days: i64) -> Entry {
        let spec = EntrySpec {
            spiffe_id: Some("spiffe://example.org/api".into()),
            audiences: Some(vec!["a".into()]),
            owner: Some("team-a".into()),
            purpose: Some("p".into()),
            environment: Some("prod".into()),
            data_class: Some("phi".into()),
            expires_at: Some(CREATED + expires_in_days * DAY),
            ..EntrySpec::default()
        };
        spec.create(
            &TrustDomain::new("example.org").unwrap(),
            &TtlPolicy::default(),
            CREATED,
        )
        .unwrap()
    }

    fn config(dormant_days: Option<u64>) -> GovernanceConfig {
        GovernanceConfig {
            dormant_after: dormant_days.map(|d| Duration::from_secs(d * 86_400)),
            ..GovernanceConfig::default()
        }
    }

    fn names(states: &[EntryState]) -> Vec<&'static str> {
        states.iter().map(|s| s.as_str()).collect()
    }

    #[test]
    fn a_fresh_entry_is_active_and_each_state_begins_on_its_date() {
        let e = entry(60);
        let c = config(Some(30));
        let at =
            |days: i64, minted: i64| names(&standing(&e, CREATED + days * DAY, &c, minted, false));
        assert_eq!(at(0, 0), ["active"]);
        // Dormant 30 days after creation when never used; not after a mint.
        assert_eq!(at(29, 0), ["active"]);
        assert_eq!(at(30, 0), ["dormant"]);
        assert_eq!(at(30, CREATED + 20 * DAY), ["active"]);
        // Expiring from 14 days before expiry (day 46), expired from day 60.
        assert_eq!(at(45, CREATED + 44 * DAY), ["active"]);
        assert_eq!(at(46, CREATED + 44 * DAY), ["expiring"]);
        assert_eq!(at(60, CREATED + 59 * DAY), ["expired"]);
    }

    #[test]
    fn review_overdue_follows_the_interval_and_the_last_review() {
        let mut e = entry(365);
        let c = config(None);
        let at = |e: &Entry, days: i64| names(&standing(e, CREATED + days * DAY, &c, 0, false));
        assert_eq!(at(&e, 89), ["active"]);
        assert_eq!(at(&e, 90), ["review-overdue"]);
        e.last_review = Some(Box::new(Review {
            at: CREATED + 80 * DAY,
            by: "alice".into(),
            note: "still needed".into(),
        }));
        assert_eq!(at(&e, 90), ["active"]);
        assert_eq!(at(&e, 170), ["review-overdue"]);
        // An entry that is never reviewed (interval 0) is never overdue.
        e.review_every_seconds = Some(0);
        assert_eq!(at(&e, 1_000), ["expired"]);
    }

    #[test]
    fn states_stack_most_severe_first_and_dormancy_is_off_by_default() {
        let mut e = entry(10);
        e.disabled = Some(Box::new(Disabled {
            at: CREATED,
            by: "alice".into(),
            reason: "r".into(),
        }));
        let now = CREATED + 100 * DAY;
        assert_eq!(
            names(&standing(&e, now, &config(Some(30)), 0, true)),
            [
                "revoked",
                "disabled",
                "expired",
                "dormant",
                "review-overdue"
            ]
        );
        assert_eq!(
            names(&standing(&e, now, &config(None), 0, false)),
            ["disabled", "expired", "review-overdue"]
        );
    }

    #[test]
    fn every_state_name_parses_back_and_a_wrong_one_lists_them() {
        for state in EntryState::ALL {
            assert_eq!(EntryState::parse(state.as_str()), Ok(state));
        }
        let error = EntryState::parse("stale").unwrap_err();
        assert!(error.contains("review-overdue"), "{error}");
    }
}
