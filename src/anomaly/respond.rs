//! What a finding does, off the mint path: the background task that takes the
//! detectors' findings one by one, decides the action by the entry's environment and
//! data class (`[anomaly]` rules), quarantines where the policy says so, alerts the
//! entry's owner and audits it all.
//!
//! Invariants, and why:
//! - **Quarantine is two ordinary, audited changes**: the entry is disabled through the
//!   store with optimistic concurrency (`entry.disable` by `mayfly-anomaly`), then an
//!   `entry` revocation covering every credential issued up to now is written through
//!   [`Revoker::revoke_issued`] (`revocation.revoke`). Every replica, agent and SDK
//!   verifier honours both through the paths they already follow. The revocation is
//!   made already lifted, so `mayfly entry enable <id> --reason ...` is all it takes to
//!   mint again; what was issued before stays revoked until it expires.
//! - **Disabling first**: nothing is minted between the revocation and the disable.
//! - **Every finding is audited** (`anomaly.detected`), whatever became of the alert or
//!   the quarantine: a webhook that is down does not hide a finding.
//! - **Nothing here waits on the mint path**, and the mint path never waits on this.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ACTOR, Detector, Finding, PRUNE_EVERY};
use crate::alert::{Alert, AlertSink};
use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::clock::Clock;
use crate::config::{AnomalyAction, AnomalyConfig};
use crate::policy::{Entry, EntryId, EntryIndex};
use crate::revoke::Revoker;
use crate::store::{Store, StoreError};
use crate::telemetry::BrokerMetrics;

/// The alert kind of a finding (also the audit action).
pub const ALERT_KIND: &str = "anomaly.detected";
/// Tries to disable an entry that other writers keep changing.
const DISABLE_TRIES: usize = 3;

/// What the task is wired to, named, for [`Responder::new`].
#[derive(Debug)]
pub struct ResponderParts {
    /// The policy.
    pub config: AnomalyConfig,
    /// The detectors, whose state the task prunes.
    pub detector: Arc<Detector>,
    /// Where entries are changed.
    pub store: Arc<dyn Store>,
    /// The registered entries.
    pub entries: Arc<EntryIndex>,
    /// Revokes what a quarantined entry issued.
    pub revoker: Arc<Revoker>,
    /// Where findings are recorded.
    pub audit: AuditLog,
    /// Where alerts go; `None` without a webhook.
    pub alerts: Option<AlertSink>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Where findings are counted.
    pub metrics: Arc<BrokerMetrics>,
    /// The trust domain, named in each alert.
    pub trust_domain: String,
}

/// The background task's side of the findings.
#[derive(Debug)]
pub struct Responder {
    parts: ResponderParts,
}

/// What one finding led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The action the policy chose.
    pub action: AnomalyAction,
    /// Quarantine only: the entry's new revision once disabled, or why not.
    pub disabled: Option<Result<u64, String>>,
    /// Quarantine only: the revocation's key, or why not.
    pub revoked: Option<Result<String, String>>,
    /// `queued`, `no webhook`, or why the alert sink refused it.
    pub alert: String,
}

impl Responder {
    /// A responder on `parts`.
    pub fn new(parts: ResponderParts) -> Self {
        Responder { parts }
    }

    /// Handles findings until `cancel`, and drops the detectors' state of deleted
    /// entries every [`PRUNE_EVERY`].
    pub async fn run(self, mut findings: mpsc::Receiver<Finding>, cancel: CancellationToken) {
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                finding = findings.recv() => match finding {
                    Some(finding) => { self.handle(&finding).await; }
                    None => return,
                },
                _ = prune.tick() => {
                    let dropped = self.parts.detector.prune();
                    if dropped > 0 {
                        tracing::debug!(dropped, "anomaly state of deleted entries dropped");
                    }
                }
            }
        }
    }

    /// Decides, acts on, alerts and audits one finding.
    pub async fn handle(&self, finding: &Finding) -> Handled {
        let parts = &self.parts;
        let detector = finding.detector().as_str();
        let entry = EntryId::parse(&finding.entry_id)
            .ok()
            .and_then(|id| parts.entries.by_id(&id));
        let action = entry.as_ref().map_or(parts.config.action, |entry| {
            parts
                .config
                .action_for(&entry.environment, &entry.data_class)
        });
        let reason = reason_text(&format!("anomaly {detector}: {}", finding.describe()));
        let (disabled, revoked) = match (&entry, action) {
            (Some(entry), AnomalyAction::Quarantine) => {
                let disabled = self.disable(entry, detector, &reason).await;
                let revoked = parts
                    .revoker
                    .revoke_issued("entry", entry.id.as_str(), &reason, ACTOR)
                    .await
                    .map(|revocation| revocation.key())
                    .map_err(|e| mayfly_sdk::error_chain(&e));
                (Some(disabled), Some(revoked))
            }
            _ => (None, None),
        };
        parts.metrics.anomaly(detector, action.as_str(), 1);
        let spiffe_id = entry
            .as_ref()
            .map(|e| e.spiffe_id.to_string())
            .or_else(|| finding.spiffe_id.clone());
        let mut body = serde_json::json!({
            "entry_id": finding.entry_id,
            "spiffe_id": spiffe_id,
            "detector": detector,
            "reason": reason,
            "figures": finding.figures_json(),
            "action": action.as_str(),
            "detected_at": crate::clock::rfc3339(finding.at),
        });
        if let Some(entry) = &entry {
            body["environment"] = entry.environment.clone().into();
            body["data_class"] = entry.data_class.clone().into();
            body["owner"] = entry.owner.clone().into();
        }
        if let Some(disabled) = &disabled {
            body["disabled"] = outcome_json(disabled.clone().map(|r| r.to_string()));
        }
        if let Some(revoked) = &revoked {
            body["revoked"] = outcome_json(revoked.clone());
        }
        let alert = match &parts.alerts {
            None => "no webhook".to_owned(),
            Some(sink) => {
                let owner = entry.as_ref().map_or("", |e| e.owner.as_str());
                let alert = Alert::new(
                    ALERT_KIND,
                    &parts.trust_domain,
                    parts.clock.unix_now(),
                    owner,
                    body.clone(),
                );
                match sink.send(alert) {
                    Ok(()) => "queued".to_owned(),
                    Err(error) => error.to_string(),
                }
            }
        };
        body["alert"] = alert.clone().into();
        let failed = matches!(disabled, Some(Err(_))) || matches!(revoked, Some(Err(_)));
        if failed {
            tracing::warn!(entry_id = %finding.entry_id, detector, %reason, ?disabled, ?revoked,
                "an anomaly's quarantine did not fully take effect");
        } else {
            tracing::info!(entry_id = %finding.entry_id, detector, action = action.as_str(),
                %reason, "anomaly detected");
        }
        let record = AuditEvent {
            action: ALERT_KIND.into(),
            outcome: Outcome::Ok,
            actor: ACTOR.into(),
            entry_id: Some(finding.entry_id.clone()),
            spiffe_id,
            reason: Some(reason),
            detail: Some(body),
            ..AuditEvent::default()
        };
        if let Err(error) = parts.audit.append(record).await {
            tracing::error!(%error, entry_id = %finding.entry_id, "cannot audit an anomaly finding");
        }
        Handled {
            action,
            disabled,
            revoked,
            alert,
        }
    }

    /// Disables the entry (optimistic concurrency, tried again on a concurrent change):
    /// its new revision, or why not. An entry already disabled stays as it is.
    async fn disable(
        &self,
        entry: &Arc<Entry>,
        detector: &str,
        reason: &str,
    ) -> Result<u64, String> {
        let parts = &self.parts;
        let mut current = Arc::clone(entry);
        for _ in 0..DISABLE_TRIES {
            if let Some(disabled) = &current.disabled {
                return Err(format!(
                    "already disabled by {} at {}",
                    disabled.by,
                    crate::clock::rfc3339(disabled.at)
                ));
            }
            let now = parts.clock.unix_now();
            let next = current
                .disabled(ACTOR, reason, now)
                .map_err(|e| e.to_string())?;
            match parts.store.update_entry(&next, current.revision).await {
                Ok(()) => {
                    parts.entries.upsert(next.clone());
                    let record = AuditEvent {
                        action: "entry.disable".into(),
                        outcome: Outcome::Ok,
                        actor: ACTOR.into(),
                        entry_id: Some(next.id.to_string()),
                        spiffe_id: Some(next.spiffe_id.to_string()),
                        reason: Some(reason.to_owned()),
                        detail: Some(serde_json::json!({
                            "detector": detector,
                            "revision": next.revision,
                        })),
                        ..AuditEvent::default()
                    };
                    if let Err(error) = parts.audit.append(record).await {
                        tracing::error!(%error, entry_id = %next.id,
                            "an entry was disabled, but its audit record could not be written");
                    }
                    return Ok(next.revision);
                }
                Err(StoreError::Conflict { .. }) => {
                    // Changed meanwhile: read it again and retry.
                    match parts.store.entry(&current.id).await {
                        Ok(Some(fresh)) => current = Arc::new(fresh),
                        Ok(None) => return Err("the entry was deleted meanwhile".into()),
                        Err(error) => return Err(mayfly_sdk::error_chain(&error)),
                    }
                }
                Err(StoreError::NotFound { .. }) => {
                    return Err("the entry was deleted meanwhile".into());
                }
                Err(error) => return Err(mayfly_sdk::error_chain(&error)),
            }
        }
        Err(format!(
            "the entry changed {DISABLE_TRIES} times while being disabled"
        ))
    }
}

fn outcome_json(result: Result<String, String>) -> serde_json::Value {
    match result {
        Ok(done) => serde_json::json!({ "ok": done }),
        Err(error) => serde_json::json!({ "error": error }),
    }
}

/// `text` as an entry's disable reason and a revocation's reason take it: no control
/// characters, at most 1000 bytes.
fn reason_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1000));
    for c in text.chars() {
        let c = if c.is_control() { '?' } else { c };
        if out.len() + c.len_utf8() > 1000 {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_clipped_and_cleaned_for_the_entry_and_the_revocation() {
        assert_eq!(reason_text("a\nb"), "a?b");
        let long = "é".repeat(800);
        let clipped = reason_text(&long);
        assert!(
            clipped.len() <= 1000 && clipped.len() >= 998,
            "{}",
            clipped.len()
        );
        assert!(crate::policy::governance_text("reason", &clipped).is_ok());
        assert_eq!(reason_text("rate spike"), "rate spike");
    }
}
