//! The OTel log events output (`[alerts] otel_logs = true`): each alert becomes one
//! OpenTelemetry log record, exported over OTLP to the collector of `[telemetry]`
//! (`otlp_endpoint`, `otlp_protocol`), where an operator's pipeline routes it like any
//! other event.
//!
//! The record (docs/operations.md, "Alerts"):
//! - event name [`EVENT_NAME`] (`mayfly.alert`), severity `WARN` (13); its body one line,
//!   `<kind> alert for <subject>`;
//! - attributes `mayfly.alert.kind`, `mayfly.alert.delivery` (the same id as the
//!   webhook's `Mayfly-Delivery`), `mayfly.alert.subject`, `mayfly.trust_domain`,
//!   `mayfly.alert.generated_at` (Unix seconds) and `mayfly.alert.body` (the alert's
//!   body as a JSON string, exactly as the webhook's JSON has it);
//! - the resource's `service.name` (`[telemetry] service_name`).
//!
//! Invariants, and why:
//! - **Nothing but the alert**: the attributes are the alert's fields, which name
//!   identities and reasons and never a secret (the producers' rule); the webhook's
//!   secret and any key stay out because this output never sees them.
//! - **A record's time is the alert's**: `time_unix_nano` is when the broker made the
//!   alert, `observed_time_unix_nano` when this try exported it, so retries do not move
//!   the event in time.

use mayfly_telemetry::{LogEvent, LogValue, Severity};

use super::Alert;

/// The event name of every alert's log record.
pub const EVENT_NAME: &str = "mayfly.alert";

/// The log record of `alert`, exported at `now` (Unix seconds).
pub fn event(alert: &Alert, now: i64) -> LogEvent {
    let text = |value: &str| LogValue::Str(value.to_owned());
    LogEvent {
        event_name: EVENT_NAME,
        time_unix_seconds: alert.generated_at,
        observed_unix_seconds: now,
        severity: Severity::Warn,
        body: format!("{} alert for {}", alert.kind, alert.subject),
        attributes: vec![
            ("mayfly.alert.kind", text(alert.kind)),
            ("mayfly.alert.delivery", text(&alert.delivery)),
            ("mayfly.alert.subject", text(&alert.subject)),
            ("mayfly.trust_domain", text(&alert.trust_domain)),
            (
                "mayfly.alert.generated_at",
                LogValue::Int(alert.generated_at),
            ),
            ("mayfly.alert.body", LogValue::Str(alert.body.to_string())),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_holds_the_alert_and_its_body_as_json() {
        let alert = Alert::new(
            "owner-digest",
            "example.org",
            1_800_000_000,
            "team-billing",
            serde_json::json!({"owner": "team-billing", "expiring": {"items": [], "omitted": 0}}),
        );
        let event = event(&alert, 1_800_000_005);
        assert_eq!(event.event_name, "mayfly.alert");
        assert_eq!(event.severity, Severity::Warn);
        assert_eq!(event.time_unix_seconds, 1_800_000_000);
        assert_eq!(event.observed_unix_seconds, 1_800_000_005);
        assert_eq!(event.body, "owner-digest alert for team-billing");
        let get = |key: &str| {
            event
                .attributes
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("mayfly.alert.delivery"),
            Some(LogValue::Str(alert.delivery.clone()))
        );
        assert_eq!(
            get("mayfly.trust_domain"),
            Some(LogValue::Str("example.org".into()))
        );
        let Some(LogValue::Str(body)) = get("mayfly.alert.body") else {
            panic!("no body attribute: {event:?}");
        };
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body, alert.body);
        let keys: Vec<&str> = event.attributes.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "mayfly.alert.kind",
                "mayfly.alert.delivery",
                "mayfly.alert.subject",
                "mayfly.trust_domain",
                "mayfly.alert.generated_at",
                "mayfly.alert.body"
            ]
        );
    }
}
