//! The `[governance]` section: how entries are reviewed, and what the
//! governance sweeper does about expired, dormant and review-overdue ones.
//!
//! ```toml
//! [governance]
//! review_every = "90d"          # owner reviews; an entry may set its own; "0s" = never
//! sweep_every = "1m"            # how often one replica looks
//! dormant_after = "30d"         # no mint for this long (or since creation); off by default
//! on_dormant = "disable"        # or "report" (the default)
//! on_review_overdue = "report"  # or "disable"
//! on_expired = "report"         # or "disable"
//! # Registered audiences (`mayfly audience`): the order of data classes,
//! # lowest first (an entry's data class is its clearance; an audience whose
//! # class ranks above it, or is not listed, is refused at mint).
//! data_classes = ["none", "internal", "confidential", "phi"]
//! # Refuse JWT-SVIDs for audiences nobody registered. Off by default, so a
//! # first entry works without registering its audience first (the quick
//! # start); the inventory report lists every unregistered audience.
//! require_registered_audiences = false
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Raw, file_invalid as invalid, file_raw, parse_duration};
use crate::audience::{AudiencePolicy, DataClasses};
use crate::policy::MAX_REVIEW_EVERY;

/// What the broker does about entry lifecycle governance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernanceConfig {
    /// How often an entry's owner must review it, unless the entry sets its
    /// own interval; zero: never. Default 90 days.
    pub review_every: Duration,
    /// How often the sweeper runs (one replica per round). Default 1 minute.
    pub sweep_every: Duration,
    /// An entry that minted nothing for this long (an entry never used:
    /// since its creation) is dormant. `None` (the default): off.
    pub dormant_after: Option<Duration>,
    /// What to do about a dormant entry.
    pub on_dormant: GovernanceAction,
    /// What to do about an entry whose owner review is overdue.
    pub on_review_overdue: GovernanceAction,
    /// What to do about an expired entry (it mints nothing either way).
    pub on_expired: GovernanceAction,
    /// The order of data classes, lowest first (`data_classes`).
    pub data_classes: DataClasses,
    /// Whether JWT-SVIDs are only minted for registered audiences
    /// (`require_registered_audiences`). Default false.
    pub require_registered_audiences: bool,
}

/// What the sweeper does about an entry a rule finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GovernanceAction {
    /// Log it and audit it, once per entry and state.
    #[default]
    Report,
    /// Disable the entry (audited as `entry.disable` by `mayfly-governance`).
    Disable,
}

impl GovernanceAction {
    /// `report` or `disable`.
    pub fn as_str(self) -> &'static str {
        match self {
            GovernanceAction::Report => "report",
            GovernanceAction::Disable => "disable",
        }
    }
}

/// The default `[governance] review_every`.
pub const DEFAULT_REVIEW_EVERY: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// The default `[governance] sweep_every`.
pub const DEFAULT_SWEEP_EVERY: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig {
            review_every: DEFAULT_REVIEW_EVERY,
            sweep_every: DEFAULT_SWEEP_EVERY,
            dormant_after: None,
            on_dormant: GovernanceAction::Report,
            on_review_overdue: GovernanceAction::Report,
            on_expired: GovernanceAction::Report,
            data_classes: DataClasses::default(),
            require_registered_audiences: false,
        }
    }
}

impl GovernanceConfig {
    /// What the mint path enforces about audiences.
    pub fn audience_policy(&self) -> AudiencePolicy {
        AudiencePolicy {
            data_classes: self.data_classes.clone(),
            require_registered: self.require_registered_audiences,
        }
    }
}

/// `[governance]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGovernance {
    review_every: Option<String>,
    sweep_every: Option<String>,
    dormant_after: Option<String>,
    on_dormant: Option<String>,
    on_review_overdue: Option<String>,
    on_expired: Option<String>,
    data_classes: Option<Vec<String>>,
    require_registered_audiences: Option<bool>,
}

impl GovernanceConfig {
    /// Applies the file's `[governance]` section, checking each setting.
    pub(super) fn apply_file(&mut self, file: &FileGovernance) -> Result<(), ConfigError> {
        if let Some(value) = &file.review_every {
            self.review_every = bounded(
                "governance.review_every",
                &file_raw(value),
                MAX_REVIEW_EVERY,
            )?;
        }
        if let Some(value) = &file.sweep_every {
            let every = bounded("governance.sweep_every", &file_raw(value), DAY)?;
            if every < Duration::from_secs(1) {
                return Err(invalid("governance.sweep_every", "must be at least 1s"));
            }
            self.sweep_every = every;
        }
        if let Some(value) = &file.dormant_after {
            let after = bounded(
                "governance.dormant_after",
                &file_raw(value),
                MAX_REVIEW_EVERY,
            )?;
            if after < DAY {
                return Err(invalid(
                    "governance.dormant_after",
                    "must be at least 1d (leave it out to turn dormancy off)",
                ));
            }
            self.dormant_after = Some(after);
        }
        action(
            &mut self.on_dormant,
            "governance.on_dormant",
            file.on_dormant.as_deref(),
        )?;
        action(
            &mut self.on_review_overdue,
            "governance.on_review_overdue",
            file.on_review_overdue.as_deref(),
        )?;
        action(
            &mut self.on_expired,
            "governance.on_expired",
            file.on_expired.as_deref(),
        )?;
        if let Some(classes) = &file.data_classes {
            self.data_classes = DataClasses::new(classes.clone())
                .map_err(|reason| invalid("governance.data_classes", &reason))?;
        }
        if let Some(require) = file.require_registered_audiences {
            self.require_registered_audiences = require;
        }
        if file.on_dormant.is_some() && self.dormant_after.is_none() {
            return Err(invalid(
                "governance.on_dormant",
                "needs governance.dormant_after",
            ));
        }
        Ok(())
    }
}

/// Reads `report` or `disable` into `target` when given.
fn action(
    target: &mut GovernanceAction,
    setting: &'static str,
    value: Option<&str>,
) -> Result<(), ConfigError> {
    match value {
        None => {}
        Some("report") => *target = GovernanceAction::Report,
        Some("disable") => *target = GovernanceAction::Disable,
        Some(other) => {
            return Err(invalid(
                setting,
                &format!("{other:?} is not one of \"report\", \"disable\""),
            ));
        }
    }
    Ok(())
}

/// A duration no longer than `max`.
fn bounded(setting: &'static str, raw: &Raw<'_>, max: Duration) -> Result<Duration, ConfigError> {
    let value = parse_duration(setting, raw)?;
    if value > max {
        return Err(ConfigError::Invalid {
            setting,
            source_name: raw.source_name.clone(),
            reason: format!(
                "{:?} is longer than the maximum of {}",
                raw.value,
                humantime::format_duration(max)
            ),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str) -> Result<GovernanceConfig, ConfigError> {
        let file: FileGovernance = crate::config::test_table(text)?;
        let mut config = GovernanceConfig::default();
        config.apply_file(&file)?;
        Ok(config)
    }

    #[test]
    fn review_every_is_read_and_bounded() {
        assert_eq!(apply("").unwrap().review_every, DEFAULT_REVIEW_EVERY);
        assert_eq!(
            apply("review_every = \"30d\"").unwrap().review_every,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            apply("review_every = \"0s\"").unwrap().review_every,
            Duration::ZERO
        );
        for bad in ["review_every = \"soon\"", "review_every = \"11years\""] {
            let error = apply(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("governance.review_every"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_sweeper_settings_are_read_and_bad_values_named() {
        let defaults = apply("").unwrap();
        assert_eq!(defaults, GovernanceConfig::default());
        assert_eq!(defaults.dormant_after, None, "dormancy is off by default");
        let set = apply(
            "sweep_every = \"5m\"\ndormant_after = \"30d\"\non_dormant = \"disable\"\n\
             on_review_overdue = \"disable\"\non_expired = \"report\"",
        )
        .unwrap();
        assert_eq!(set.sweep_every, Duration::from_secs(300));
        assert_eq!(set.dormant_after, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(set.on_dormant, GovernanceAction::Disable);
        assert_eq!(set.on_review_overdue, GovernanceAction::Disable);
        assert_eq!(set.on_expired, GovernanceAction::Report);
        for (bad, setting) in [
            ("sweep_every = \"0s\"", "governance.sweep_every"),
            ("sweep_every = \"2d\"", "governance.sweep_every"),
            ("sweep_every = \"often\"", "governance.sweep_every"),
            ("dormant_after = \"1h\"", "governance.dormant_after"),
            (
                "dormant_after = \"30d\"\non_dormant = \"delete\"",
                "governance.on_dormant",
            ),
            ("on_dormant = \"disable\"", "governance.on_dormant"),
            (
                "on_review_overdue = \"Disable\"",
                "governance.on_review_overdue",
            ),
            ("on_expired = \"purge\"", "governance.on_expired"),
        ] {
            let error = apply(bad).unwrap_err().to_string();
            assert!(error.starts_with(setting), "{bad}: {error}");
        }
        assert!(
            apply("on_dormant_after = \"1d\"").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn audience_settings_are_read_and_checked() {
        let defaults = apply("").unwrap();
        assert_eq!(defaults.data_classes, DataClasses::default());
        assert!(!defaults.require_registered_audiences);
        let set =
            apply("data_classes = [\"public\", \"secret\"]\nrequire_registered_audiences = true")
                .unwrap();
        assert_eq!(set.data_classes.rank("secret"), Some(1));
        assert!(set.audience_policy().require_registered);
        for bad in [
            "data_classes = []",
            "data_classes = [\"a\", \"a\"]",
            "data_classes = [\"Secret\"]",
        ] {
            let error = apply(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("governance.data_classes"),
                "{bad}: {error}"
            );
        }
    }
}
