//! The `[alerts]` section: where the broker sends alerts for people (the owners'
//! governance digest, `mayfly alerts test`, ...), and how often the digest goes out.
//!
//! ```toml
//! [alerts]
//! webhook_url = "https://alerts.example/mayfly"    # off by default
//! webhook_secret_file = "/etc/mayfly/webhook.key"  # 0600, 32+ bytes; signs each body
//! webhook_ca = "/etc/mayfly/alerts-ca.pem"         # a private CA instead of the system's
//! otel_logs = true                                 # also OTel log events, to [telemetry]'s
//!                                                  # collector; off by default
//! owner_digest_every = "1d"                        # one digest per owner with work; "0s" = never
//! ```
//!
//! Either output, both or none may be configured; alerts go to each configured one.
//!
//! Checked at start: a webhook without a secret file, a secret file that others may read,
//! a CA file that holds no certificate, or `otel_logs` without an OTLP endpoint
//! (`[telemetry] otlp_endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT`) stops the server before
//! it binds anything.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, file_invalid as invalid, file_raw, parse_duration};
use crate::alert::{Webhook, WebhookConfig, WebhookError};
use crate::outbound::HttpUrl;

/// The default `[alerts] owner_digest_every`.
pub const DEFAULT_OWNER_DIGEST_EVERY: Duration = Duration::from_secs(24 * 60 * 60);
const HOUR: Duration = Duration::from_secs(60 * 60);
const MAX_DIGEST_EVERY: Duration = Duration::from_secs(31 * 24 * 60 * 60);

/// Where alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// The webhook; `None` (the default): alerts are not sent, and
    /// `mayfly report owners` is the only way to read the digest.
    pub webhook: Option<WebhookConfig>,
    /// `otel_logs`: each alert is also an OpenTelemetry log record exported to the OTLP
    /// collector of `[telemetry]`. Default off.
    pub otel_logs: bool,
    /// How often each owner with something to do gets a digest (rounds aligned on the
    /// clock, one replica per round); zero: never. Default one day.
    pub owner_digest_every: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook: None,
            otel_logs: false,
            owner_digest_every: DEFAULT_OWNER_DIGEST_EVERY,
        }
    }
}

/// `[alerts]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAlerts {
    webhook_url: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    webhook_ca: Option<PathBuf>,
    otel_logs: Option<bool>,
    owner_digest_every: Option<String>,
}

impl AlertsConfig {
    /// Applies the file's `[alerts]` section, checking each setting.
    pub(super) fn apply_file(&mut self, file: &FileAlerts) -> Result<(), ConfigError> {
        match (&file.webhook_url, &file.webhook_secret_file) {
            (Some(url), Some(secret_file)) => {
                let url = HttpUrl::parse(url)
                    .map_err(|e| invalid("alerts.webhook_url", &e.to_string()))?;
                self.webhook = Some(WebhookConfig {
                    url,
                    secret_file: secret_file.clone(),
                    ca_file: file.webhook_ca.clone(),
                });
            }
            (Some(_), None) => {
                return Err(invalid(
                    "alerts.webhook_secret_file",
                    "is required with alerts.webhook_url: every body is signed \
                     (create one with `openssl rand -hex 32 > FILE; chmod 600 FILE`)",
                ));
            }
            (None, _) => {
                for (setting, given) in [
                    (
                        "alerts.webhook_secret_file",
                        file.webhook_secret_file.is_some(),
                    ),
                    ("alerts.webhook_ca", file.webhook_ca.is_some()),
                ] {
                    if given {
                        return Err(invalid(setting, "needs alerts.webhook_url"));
                    }
                }
            }
        }
        if let Some(on) = file.otel_logs {
            self.otel_logs = on;
        }
        if let Some(value) = &file.owner_digest_every {
            let every = parse_duration("alerts.owner_digest_every", &file_raw(value))?;
            if every != Duration::ZERO && !(HOUR..=MAX_DIGEST_EVERY).contains(&every) {
                return Err(invalid(
                    "alerts.owner_digest_every",
                    "must be between 1h and 31d, or \"0s\" for never",
                ));
            }
            self.owner_digest_every = every;
        }
        Ok(())
    }

    /// Whether any output is configured (then the broker runs an alert sink).
    pub fn any_output(&self) -> bool {
        self.webhook.is_some() || self.otel_logs
    }

    /// Checks that `otel_logs` has a collector to go to (`otlp`, the file's and the
    /// environment's `[telemetry]` settings), and sets up the webhook's client, which
    /// reads its secret and CA files, so that a file that cannot be used stops the
    /// server before it binds anything.
    pub(super) fn check(&self, otlp: &mayfly_telemetry::OtlpConfig) -> Result<(), ConfigError> {
        if self.otel_logs && otlp.endpoint.is_none() {
            return Err(invalid(
                "alerts.otel_logs",
                "needs an OTLP collector: set [telemetry] otlp_endpoint (or \
                 OTEL_EXPORTER_OTLP_ENDPOINT), or set otel_logs = false",
            ));
        }
        let Some(webhook) = &self.webhook else {
            return Ok(());
        };
        Webhook::new(webhook).map(drop).map_err(|e| {
            let setting = match &e {
                WebhookError::SecretFile { .. } | WebhookError::SecretLength { .. } => {
                    "alerts.webhook_secret_file"
                }
                WebhookError::CaFile(_) => "alerts.webhook_ca",
                _ => "alerts.webhook_url",
            };
            invalid(setting, &mayfly_sdk::error_chain(&e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str) -> Result<AlertsConfig, ConfigError> {
        let file: FileAlerts = crate::config::test_table(text)?;
        let mut config = AlertsConfig::default();
        config.apply_file(&file)?;
        Ok(config)
    }

    #[test]
    fn the_webhook_needs_a_secret_and_the_digest_a_sane_rhythm() {
        assert_eq!(apply("").unwrap(), AlertsConfig::default());
        let set = apply(
            "webhook_url = \"https://alerts.example/m\"\nwebhook_secret_file = \"/k\"\n\
             owner_digest_every = \"7d\"",
        )
        .unwrap();
        assert_eq!(
            set.webhook.as_ref().unwrap().url.to_string(),
            "https://alerts.example/m"
        );
        assert_eq!(set.owner_digest_every, Duration::from_secs(7 * 86_400));
        assert_eq!(
            apply("owner_digest_every = \"0s\"")
                .unwrap()
                .owner_digest_every,
            Duration::ZERO
        );
        for (bad, setting) in [
            (
                "webhook_url = \"https://a.example/m\"",
                "alerts.webhook_secret_file",
            ),
            ("webhook_secret_file = \"/k\"", "alerts.webhook_secret_file"),
            ("webhook_ca = \"/ca.pem\"", "alerts.webhook_ca"),
            (
                "webhook_url = \"ftp://a.example/m\"\nwebhook_secret_file = \"/k\"",
                "alerts.webhook_url",
            ),
            (
                "webhook_url = \"https://u:pw@a.example/m\"\nwebhook_secret_file = \"/k\"",
                "alerts.webhook_url",
            ),
            ("owner_digest_every = \"10m\"", "alerts.owner_digest_every"),
            ("owner_digest_every = \"60d\"", "alerts.owner_digest_every"),
            (
                "owner_digest_every = \"daily\"",
                "alerts.owner_digest_every",
            ),
        ] {
            let error = apply(bad).unwrap_err().to_string();
            assert!(error.starts_with(setting), "{bad}: {error}");
            assert!(!error.contains("pw@"), "{error}");
        }
        assert!(
            apply("webhook = \"x\"").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn otel_logs_needs_an_otlp_endpoint() {
        let on = apply("otel_logs = true").unwrap();
        assert!(on.otel_logs && on.any_output());
        assert!(!AlertsConfig::default().any_output());
        assert!(!apply("otel_logs = false").unwrap().any_output());
        let mut otlp = mayfly_telemetry::OtlpConfig::off("mayfly-test");
        let error = on.check(&otlp).unwrap_err().to_string();
        assert!(
            error.starts_with("alerts.otel_logs") && error.contains("otlp_endpoint"),
            "{error}"
        );
        // Positive control: with an endpoint, the same setting is accepted.
        otlp.endpoint = Some("http://127.0.0.1:4317".into());
        on.check(&otlp).unwrap();
        assert!(apply("otel_logs = \"yes\"").is_err(), "a boolean only");
    }
}
