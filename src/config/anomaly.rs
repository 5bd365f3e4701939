//! The `[anomaly]` section: the detectors on the mint path ([`crate::anomaly`]), their
//! thresholds, and what a finding does, by the entry's environment and data class.
//!
//! ```toml
//! [anomaly]
//! enabled = true                 # the detectors run (default)
//! rate_window = "10s"            # mints are counted per window, per entry
//! rate_factor = 10.0             # a spike: more than this many times the baseline...
//! rate_floor = 1000              # ...and more than this many mints in one window
//! baseline_half_life = "30m"     # how fast the baseline forgets
//! refusal_count = 20             # probing: this many refusals for one entry...
//! refusal_window = "5m"          # ...within this long
//! source_stable_after = "1d"     # a new source counts once the sources were stable this long
//! cooldown = "10m"               # one finding per entry and detector per cooldown
//! action = "alert"               # the default: alert only ("quarantine" disables and revokes)
//!
//! [[anomaly.rules]]              # the first rule that matches the entry decides
//! environment = "prod"           # unset: any environment
//! data_class = "phi"             # unset: any data class
//! action = "quarantine"
//! ```
//!
//! Defaults never quarantine: only a rule (or `action`) that says so does.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, file_invalid as invalid, file_raw, parse_duration};

/// The most rules `[[anomaly.rules]]` may hold: they are tried in order on every finding.
pub const MAX_ANOMALY_RULES: usize = 64;
/// The largest `refusal_count`: each entry keeps that many refusal times.
pub const MAX_REFUSAL_COUNT: u32 = 32;

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(60 * 60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// What a finding does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnomalyAction {
    /// Audit it, count it and send an alert.
    #[default]
    Alert,
    /// As `Alert`, and disable the entry and revoke what it issued until now.
    Quarantine,
}

impl AnomalyAction {
    /// `alert` or `quarantine`.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyAction::Alert => "alert",
            AnomalyAction::Quarantine => "quarantine",
        }
    }

    fn parse(setting: &'static str, value: &str) -> Result<Self, ConfigError> {
        match value {
            "alert" => Ok(AnomalyAction::Alert),
            "quarantine" => Ok(AnomalyAction::Quarantine),
            other => Err(invalid(
                setting,
                &format!("{other:?} is not an action; expected \"alert\" or \"quarantine\""),
            )),
        }
    }
}

/// One `[[anomaly.rules]]`: the action for entries of an environment and data class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyRule {
    /// The entry's environment; `None`: any.
    pub environment: Option<String>,
    /// The entry's data class; `None`: any.
    pub data_class: Option<String>,
    /// What a finding about such an entry does.
    pub action: AnomalyAction,
}

impl AnomalyRule {
    /// Whether the rule applies to an entry of `environment` and `data_class`.
    pub fn matches(&self, environment: &str, data_class: &str) -> bool {
        self.environment.as_deref().is_none_or(|e| e == environment)
            && self.data_class.as_deref().is_none_or(|c| c == data_class)
    }
}

/// The detectors' thresholds and the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyConfig {
    /// Whether the detectors run. Default true.
    pub enabled: bool,
    /// The window mints are counted in. Default 10 s.
    pub rate_window: Duration,
    /// A rate spike is more than this many times the baseline (k). Default 10.
    pub rate_factor: f64,
    /// ...and more than this many mints in one window. Default 1000.
    pub rate_floor: u32,
    /// The baseline's half-life: after it, an old window weighs half. Default 30 min.
    pub baseline_half_life: Duration,
    /// Probing: this many refusals for one entry (N)... Default 20.
    pub refusal_count: u32,
    /// ...within this long (M). Default 5 min.
    pub refusal_window: Duration,
    /// A new source is a finding once the entry's sources were unchanged this long.
    /// Default one day.
    pub source_stable_after: Duration,
    /// One finding per entry and detector per cooldown. Default 10 min.
    pub cooldown: Duration,
    /// What a finding does when no rule matches. Default `alert`.
    pub action: AnomalyAction,
    /// The first rule matching the entry decides instead.
    pub rules: Vec<AnomalyRule>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: true,
            rate_window: Duration::from_secs(10),
            rate_factor: 10.0,
            rate_floor: 1000,
            baseline_half_life: Duration::from_secs(30 * 60),
            refusal_count: 20,
            refusal_window: Duration::from_secs(5 * 60),
            source_stable_after: DAY,
            cooldown: Duration::from_secs(10 * 60),
            action: AnomalyAction::Alert,
            rules: Vec::new(),
        }
    }
}

impl AnomalyConfig {
    /// What a finding about an entry of `environment` and `data_class` does: the first
    /// matching rule's action, else `action`.
    pub fn action_for(&self, environment: &str, data_class: &str) -> AnomalyAction {
        self.rules
            .iter()
            .find(|rule| rule.matches(environment, data_class))
            .map_or(self.action, |rule| rule.action)
    }
}

/// `[anomaly]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAnomaly {
    enabled: Option<bool>,
    rate_window: Option<String>,
    rate_factor: Option<f64>,
    rate_floor: Option<u32>,
    baseline_half_life: Option<String>,
    refusal_count: Option<u32>,
    refusal_window: Option<String>,
    source_stable_after: Option<String>,
    cooldown: Option<String>,
    action: Option<String>,
    #[serde(default)]
    rules: Vec<FileAnomalyRule>,
}

/// One `[[anomaly.rules]]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAnomalyRule {
    environment: Option<String>,
    data_class: Option<String>,
    action: Option<String>,
}

impl AnomalyConfig {
    /// Applies the file's `[anomaly]` section, checking each setting.
    pub(super) fn apply_file(&mut self, file: &FileAnomaly) -> Result<(), ConfigError> {
        if let Some(enabled) = file.enabled {
            self.enabled = enabled;
        }
        let duration = |setting: &'static str,
                        value: &Option<String>,
                        range: std::ops::RangeInclusive<Duration>,
                        words: &str|
         -> Result<Option<Duration>, ConfigError> {
            let Some(value) = value else {
                return Ok(None);
            };
            let parsed = parse_duration(setting, &file_raw(value))?;
            if !range.contains(&parsed) {
                return Err(invalid(setting, &format!("must be {words}")));
            }
            Ok(Some(parsed))
        };
        if let Some(window) = duration(
            "anomaly.rate_window",
            &file.rate_window,
            SECOND..=HOUR,
            "between 1s and 1h",
        )? {
            self.rate_window = window;
        }
        if let Some(half_life) = duration(
            "anomaly.baseline_half_life",
            &file.baseline_half_life,
            SECOND..=Duration::from_secs(30 * 24 * 60 * 60),
            "between 1s and 30d",
        )? {
            self.baseline_half_life = half_life;
        }
        if self.baseline_half_life < self.rate_window {
            return Err(invalid(
                "anomaly.baseline_half_life",
                "must be at least anomaly.rate_window: the baseline is an average of windows",
            ));
        }
        if let Some(factor) = file.rate_factor {
            if !(factor.is_finite() && (1.0..=1000.0).contains(&factor)) {
                return Err(invalid(
                    "anomaly.rate_factor",
                    "must be between 1.0 and 1000.0",
                ));
            }
            self.rate_factor = factor;
        }
        if let Some(floor) = file.rate_floor {
            if floor == 0 {
                return Err(invalid(
                    "anomaly.rate_floor",
                    "must be at least 1 (mints in one anomaly.rate_window)",
                ));
            }
            self.rate_floor = floor;
        }
        if let Some(count) = file.refusal_count {
            if !(2..=MAX_REFUSAL_COUNT).contains(&count) {
                return Err(invalid(
                    "anomaly.refusal_count",
                    &format!("must be between 2 and {MAX_REFUSAL_COUNT}"),
                ));
            }
            self.refusal_count = count;
        }
        if let Some(window) = duration(
            "anomaly.refusal_window",
            &file.refusal_window,
            SECOND..=DAY,
            "between 1s and 1d",
        )? {
            self.refusal_window = window;
        }
        if let Some(stable) = duration(
            "anomaly.source_stable_after",
            &file.source_stable_after,
            Duration::from_secs(60)..=Duration::from_secs(365 * 24 * 60 * 60),
            "between 1m and 365d",
        )? {
            self.source_stable_after = stable;
        }
        if let Some(cooldown) = duration(
            "anomaly.cooldown",
            &file.cooldown,
            SECOND..=DAY,
            "between 1s and 1d",
        )? {
            self.cooldown = cooldown;
        }
        if let Some(action) = &file.action {
            self.action = AnomalyAction::parse("anomaly.action", action)?;
        }
        if file.rules.len() > MAX_ANOMALY_RULES {
            return Err(invalid(
                "anomaly.rules",
                &format!("at most {MAX_ANOMALY_RULES} rules"),
            ));
        }
        self.rules = file
            .rules
            .iter()
            .enumerate()
            .map(|(n, rule)| parse_rule(n + 1, rule))
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

fn parse_rule(number: usize, rule: &FileAnomalyRule) -> Result<AnomalyRule, ConfigError> {
    let label = |what: &str, value: &Option<String>| -> Result<Option<String>, ConfigError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(invalid(
                "anomaly.rules",
                &format!(
                    "rule {number}: {what} {value:?} is not one: 1-64 lowercase letters, \
                     digits, '-' or '_' (as on entries: prod, phi)"
                ),
            ));
        }
        Ok(Some(value.clone()))
    };
    let environment = label("environment", &rule.environment)?;
    let data_class = label("data_class", &rule.data_class)?;
    if environment.is_none() && data_class.is_none() {
        return Err(invalid(
            "anomaly.rules",
            &format!(
                "rule {number} names neither environment nor data_class; \
                 for every entry, set anomaly.action instead"
            ),
        ));
    }
    let Some(action) = &rule.action else {
        return Err(invalid(
            "anomaly.rules",
            &format!("rule {number} needs an action: \"alert\" or \"quarantine\""),
        ));
    };
    Ok(AnomalyRule {
        environment,
        data_class,
        action: AnomalyAction::parse("anomaly.rules", action)
            .map_err(|e| invalid("anomaly.rules", &format!("rule {number}: {e}")))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str) -> Result<AnomalyConfig, ConfigError> {
        let file: FileAnomaly = crate::config::test_table(text)?;
        let mut config = AnomalyConfig::default();
        config.apply_file(&file)?;
        Ok(config)
    }

    #[test]
    fn the_defaults_never_quarantine() {
        let config = apply("").unwrap();
        assert_eq!(config, AnomalyConfig::default());
        assert!(config.enabled);
        for (environment, class) in [("prod", "phi"), ("test", "none")] {
            assert_eq!(config.action_for(environment, class), AnomalyAction::Alert);
        }
    }

    #[test]
    fn every_setting_is_read_and_the_first_matching_rule_wins() {
        let config = apply(
            "enabled = false\nrate_window = \"30s\"\nrate_factor = 4.5\nrate_floor = 50\n\
             baseline_half_life = \"1h\"\nrefusal_count = 5\nrefusal_window = \"1m\"\n\
             source_stable_after = \"2h\"\ncooldown = \"30s\"\naction = \"alert\"\n\
             [[rules]]\nenvironment = \"prod\"\ndata_class = \"phi\"\naction = \"quarantine\"\n\
             [[rules]]\nenvironment = \"prod\"\naction = \"alert\"\n\
             [[rules]]\ndata_class = \"phi\"\naction = \"quarantine\"\n",
        )
        .unwrap();
        assert!(!config.enabled);
        assert_eq!(config.rate_window, Duration::from_secs(30));
        assert!((config.rate_factor - 4.5).abs() < f64::EPSILON);
        assert_eq!(config.rate_floor, 50);
        assert_eq!(config.baseline_half_life, HOUR);
        assert_eq!(config.refusal_count, 5);
        assert_eq!(config.refusal_window, Duration::from_secs(60));
        assert_eq!(config.source_stable_after, 2 * HOUR);
        assert_eq!(config.cooldown, Duration::from_secs(30));
        assert_eq!(config.rules.len(), 3);
        let decide = |e, c| config.action_for(e, c);
        assert_eq!(decide("prod", "phi"), AnomalyAction::Quarantine);
        assert_eq!(decide("prod", "none"), AnomalyAction::Alert);
        assert_eq!(decide("staging", "phi"), AnomalyAction::Quarantine);
        assert_eq!(decide("staging", "none"), AnomalyAction::Alert);
        let quarantine_all = apply("action = \"quarantine\"").unwrap();
        assert_eq!(
            quarantine_all.action_for("dev", "none"),
            AnomalyAction::Quarantine
        );
    }

    #[test]
    fn bad_values_and_unknown_fields_are_refused_naming_the_setting() {
        for (bad, setting) in [
            ("rate_window = \"0s\"", "anomaly.rate_window"),
            ("rate_window = \"2h\"", "anomaly.rate_window"),
            ("rate_window = \"soon\"", "anomaly.rate_window"),
            ("rate_factor = 0.5", "anomaly.rate_factor"),
            ("rate_factor = nan", "anomaly.rate_factor"),
            ("rate_floor = 0", "anomaly.rate_floor"),
            (
                "rate_window = \"1m\"\nbaseline_half_life = \"30s\"",
                "anomaly.baseline_half_life",
            ),
            ("refusal_count = 1", "anomaly.refusal_count"),
            ("refusal_count = 33", "anomaly.refusal_count"),
            ("refusal_window = \"2d\"", "anomaly.refusal_window"),
            (
                "source_stable_after = \"10s\"",
                "anomaly.source_stable_after",
            ),
            ("cooldown = \"0s\"", "anomaly.cooldown"),
            ("action = \"disable\"", "anomaly.action"),
            ("[[rules]]\naction = \"quarantine\"", "anomaly.rules"),
            ("[[rules]]\nenvironment = \"prod\"", "anomaly.rules"),
            (
                "[[rules]]\nenvironment = \"Prod\"\naction = \"alert\"",
                "anomaly.rules",
            ),
            (
                "[[rules]]\ndata_class = \"phi\"\naction = \"block\"",
                "anomaly.rules",
            ),
        ] {
            let error = apply(bad).unwrap_err().to_string();
            assert!(error.starts_with(setting), "{bad}: {error}");
        }
        let many = "[[rules]]\nenvironment = \"prod\"\naction = \"alert\"\n".repeat(65);
        assert!(apply(&many).unwrap_err().to_string().contains("at most 64"));
        assert!(apply("threshold = 3").is_err(), "unknown keys are refused");
        assert!(
            apply("[[rules]]\nenvironment = \"prod\"\naction = \"alert\"\nowner = \"x\"").is_err(),
            "unknown rule keys are refused"
        );
        // Positive control: the same settings in range are taken.
        apply(
            "rate_window = \"1h\"\nbaseline_half_life = \"1h\"\nrefusal_count = 32\n\
             source_stable_after = \"1m\"\ncooldown = \"1d\"",
        )
        .unwrap();
    }
}
