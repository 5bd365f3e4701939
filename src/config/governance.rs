//! The `[governance]` section: how entries are reviewed.
//!
//! ```toml
//! [governance]
//! review_every = "90d"   # owner reviews; an entry may set its own; "0s" = never
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Raw, file_raw, parse_duration};
use crate::policy::MAX_REVIEW_EVERY;

/// What the broker does about entry lifecycle governance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernanceConfig {
    /// How often an entry's owner must review it, unless the entry sets its
    /// own interval; zero: never. Default 90 days.
    pub review_every: Duration,
}

/// The default `[governance] review_every`.
pub const DEFAULT_REVIEW_EVERY: Duration = Duration::from_secs(90 * 24 * 60 * 60);

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig {
            review_every: DEFAULT_REVIEW_EVERY,
        }
    }
}

/// `[governance]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGovernance {
    review_every: Option<String>,
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
        Ok(())
    }
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
        let file: FileGovernance = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "test".into(),
            reason: e.to_string(),
        })?;
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
}
