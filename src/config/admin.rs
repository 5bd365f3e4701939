//! The `[admin]` section (who may open the admin socket, and where it is) and the
//! `[breakglass]` section (how long emergency grants may last).
//!
//! ```toml
//! [admin]
//! socket_path = "/run/mayfly/admin.sock"  # default: <data_dir>/admin.sock
//! socket_group = "mayfly-operators"       # a group name or gid; off by default
//!
//! [breakglass]
//! max_ttl = "4h"          # the longest grant an operator may ask for (at most 24h)
//! approve_within = "1h"   # a grant not approved by then lapses (at most 24h)
//! ```
//!
//! Without `socket_group` the socket is the data directory owner's alone (mode 0600) and
//! only that user or root may administer. With it, the socket is handed to the group (mode
//! 0660) and its members may administer too: each is still told apart by the uid the kernel
//! reports for the socket's peer, which is what break-glass needs to keep a requester from
//! approving their own grant. The group must be able to reach the socket, so a
//! `socket_group` with a socket inside the private data directory stops the server at start.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, file_invalid as invalid, file_raw, parse_duration};

/// The default `[breakglass] max_ttl`.
pub const DEFAULT_GRANT_MAX_TTL: Duration = Duration::from_secs(4 * 60 * 60);
/// The default `[breakglass] approve_within`.
pub const DEFAULT_APPROVE_WITHIN: Duration = Duration::from_secs(60 * 60);
/// The longest either may be set to.
pub const GRANT_HARD_CAP: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest either may be set to.
const GRANT_FLOOR: Duration = Duration::from_secs(60);

/// Who may open the admin socket, and where it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where the admin socket is bound; `None`: `<data_dir>/admin.sock`.
    pub socket_path: Option<PathBuf>,
    /// The operators' group (a name or a numeric gid), resolved at start.
    pub socket_group: Option<String>,
}

/// How long emergency grants may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakglassConfig {
    /// The longest TTL a grant may ask for.
    pub max_ttl: Duration,
    /// How long a grant waits for its second operator before it lapses.
    pub approve_within: Duration,
}

impl Default for BreakglassConfig {
    fn default() -> Self {
        BreakglassConfig {
            max_ttl: DEFAULT_GRANT_MAX_TTL,
            approve_within: DEFAULT_APPROVE_WITHIN,
        }
    }
}

/// `[admin]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    socket_path: Option<PathBuf>,
    socket_group: Option<String>,
}

/// `[breakglass]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBreakglass {
    max_ttl: Option<String>,
    approve_within: Option<String>,
}

impl AdminConfig {
    /// Applies the file's `[admin]` section.
    pub(super) fn apply_file(&mut self, file: &FileAdmin) -> Result<(), ConfigError> {
        if let Some(path) = &file.socket_path {
            if !path.is_absolute() {
                return Err(invalid("admin.socket_path", "must be an absolute path"));
            }
            self.socket_path = Some(path.clone());
        }
        if let Some(group) = &file.socket_group {
            let group = group.trim();
            let valid = !group.is_empty()
                && group.len() <= 64
                && group
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(invalid(
                    "admin.socket_group",
                    "must be a group name (letters, digits, '_', '-', '.') or a numeric gid",
                ));
            }
            self.socket_group = Some(group.to_owned());
        }
        Ok(())
    }
}

impl BreakglassConfig {
    /// Applies the file's `[breakglass]` section.
    pub(super) fn apply_file(&mut self, file: &FileBreakglass) -> Result<(), ConfigError> {
        if let Some(value) = &file.max_ttl {
            self.max_ttl = bounded("breakglass.max_ttl", value)?;
        }
        if let Some(value) = &file.approve_within {
            self.approve_within = bounded("breakglass.approve_within", value)?;
        }
        Ok(())
    }
}

fn bounded(setting: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let duration = parse_duration(setting, &file_raw(value))?;
    if !(GRANT_FLOOR..=GRANT_HARD_CAP).contains(&duration) {
        return Err(invalid(setting, "must be between 1m and 24h"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(text: &str) -> Result<AdminConfig, ConfigError> {
        let file: FileAdmin = crate::config::test_table(text)?;
        let mut config = AdminConfig::default();
        config.apply_file(&file)?;
        Ok(config)
    }

    fn breakglass(text: &str) -> Result<BreakglassConfig, ConfigError> {
        let file: FileBreakglass = crate::config::test_table(text)?;
        let mut config = BreakglassConfig::default();
        config.apply_file(&file)?;
        Ok(config)
    }

    #[test]
    fn the_admin_section_takes_a_path_and_a_group_and_refuses_nonsense() {
        assert_eq!(admin("").unwrap(), AdminConfig::default());
        let set = admin("socket_path = \"/run/m/admin.sock\"\nsocket_group = \"ops\"").unwrap();
        assert_eq!(set.socket_path, Some(PathBuf::from("/run/m/admin.sock")));
        assert_eq!(set.socket_group.as_deref(), Some("ops"));
        assert_eq!(
            admin("socket_group = \"2000\"")
                .unwrap()
                .socket_group
                .as_deref(),
            Some("2000")
        );
        for (bad, setting) in [
            ("socket_path = \"admin.sock\"", "admin.socket_path"),
            ("socket_group = \"\"", "admin.socket_group"),
            ("socket_group = \"ops;rm\"", "admin.socket_group"),
        ] {
            let error = admin(bad).unwrap_err().to_string();
            assert!(error.starts_with(setting), "{bad}: {error}");
        }
        assert!(admin("group = \"x\"").is_err(), "unknown keys are refused");
    }

    #[test]
    fn grants_last_between_a_minute_and_a_day() {
        assert_eq!(breakglass("").unwrap(), BreakglassConfig::default());
        let set = breakglass("max_ttl = \"30m\"\napprove_within = \"24h\"").unwrap();
        assert_eq!(set.max_ttl, Duration::from_secs(1800));
        assert_eq!(set.approve_within, GRANT_HARD_CAP);
        for (bad, setting) in [
            ("max_ttl = \"25h\"", "breakglass.max_ttl"),
            ("max_ttl = \"30s\"", "breakglass.max_ttl"),
            ("approve_within = \"soon\"", "breakglass.approve_within"),
        ] {
            let error = breakglass(bad).unwrap_err().to_string();
            assert!(error.starts_with(setting), "{bad}: {error}");
        }
        assert!(
            breakglass("ttl = \"1h\"").is_err(),
            "unknown keys are refused"
        );
    }
}
