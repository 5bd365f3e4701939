//! The governance sweeper: every `[governance] sweep_every` one replica
//! looks at every entry that is not disabled and finds those that are
//! expired, dormant (no mint for `dormant_after`; an entry never used counts
//! from its creation) or overdue for their owner review. Per policy it
//! disables them (an `entry.disable` audit record by `mayfly-governance`,
//! the reason naming the rule and the dates) or reports them (a
//! `governance.report` record and a log line).
//!
//! Invariants, and why:
//! - **One replica per round.** Every replica wakes on its own timer, and
//!   the round is the clock's time divided by `sweep_every`; the first
//!   replica to record the round's key through [`Store::use_once`] sweeps,
//!   the others skip it. So with a shared store exactly one disable record
//!   is written per entry and round, whatever the number of replicas.
//! - **A report is made once per entry, rule and entry revision** (again
//!   after [`REPORT_AGAIN_AFTER`] while it lasts), recorded through the store
//!   too, so that neither every minute nor every replica repeats it.
//! - **A disable is an ordinary entry update**, with the store's optimistic
//!   concurrency: an operator's change made meanwhile wins, and the entry is
//!   looked at again next round.
//!
//! What it cannot do: dormancy is judged on the usage this replica knows
//! (its own mints and the saved usage of every replica, saved every few
//! seconds), so an entry used only in the last seconds on another replica
//! may look a little older than it is. `dormant_after` is at least a day.

use std::sync::Arc;
use std::time::Duration;

use crate::alert::{Alert, AlertSink};
use crate::audit::{AuditError, AuditEvent, AuditLog, Outcome};
use crate::clock::{Clock, rfc3339};
use crate::config::{GovernanceAction, GovernanceConfig};
use crate::mint::UsageTracker;
use crate::policy::{Entry, EntryIndex};
use crate::store::{Store, StoreError};

pub mod digest;
mod standing;

pub use standing::{EXPIRING_WITHIN, EntryState, dormant_since, is_dormant, standing};

/// The actor of every record the sweeper writes.
pub const GOVERNANCE_ACTOR: &str = "mayfly-governance";

/// A report is repeated this long after the last one while what it found
/// lasts (and the entry is not changed meanwhile).
pub const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// A duration as an operator writes it in the config: whole days as `90d`,
/// else whole hours as `36h`, else seconds (`humantime` would say
/// `2months 29days 13h 26m 24s` for 90 days).
pub fn describe_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{s}s"),
    }
}

/// Why a sweep could not finish; the next round tries again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovernanceError {
    /// The store could not coordinate the round or save a change.
    #[error("governance sweep: the store failed: {0}")]
    Store(#[from] StoreError),
    /// An audit record could not be written; the change it describes was
    /// made (a disable) or not reported yet (a report).
    #[error("governance sweep: the audit log failed for entry {entry_id}: {source}")]
    Audit {
        /// The entry.
        entry_id: String,
        /// Why.
        #[source]
        source: AuditError,
    },
    /// The owners' digest could not be recorded for an owner: the round stops there.
    #[error("owners' digest: the audit log failed for owner {owner:?}: {source}")]
    DigestAudit {
        /// The owner.
        owner: String,
        /// Why.
        #[source]
        source: AuditError,
    },
}

/// A rule an entry broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// Past its expiry date.
    Expired,
    /// No mint for `dormant_after`.
    Dormant,
    /// Its owner review is overdue.
    ReviewOverdue,
}

impl Rule {
    /// `expired`, `dormant` or `review_overdue`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Expired => "expired",
            Rule::Dormant => "dormant",
            Rule::ReviewOverdue => "review_overdue",
        }
    }
}

/// What one entry was found to be, and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The entry.
    pub entry_id: String,
    /// The rule it broke.
    pub rule: Rule,
    /// What the policy said to do.
    pub action: GovernanceAction,
    /// The rule and the dates, as audited.
    pub reason: String,
}

/// What a sweep did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepOutcome {
    /// Another replica took this round.
    Skipped {
        /// The round.
        round: i64,
    },
    /// This replica swept the round.
    Swept {
        /// The round.
        round: i64,
        /// The entries it disabled or reported (a report already made is
        /// not listed again).
        findings: Vec<Finding>,
    },
}

/// Sweeps the entries for governance rules (module docs).
#[derive(Debug)]
pub struct Sweeper {
    config: GovernanceConfig,
    store: Arc<dyn Store>,
    entries: Arc<EntryIndex>,
    usage: Arc<UsageTracker>,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    alerts: Option<DigestAlerts>,
}

/// Where the owners' digest goes, and how often.
#[derive(Debug)]
struct DigestAlerts {
    sink: AlertSink,
    every: Duration,
    trust_domain: String,
}

/// What one owners' digest round did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestOutcome {
    /// No webhook, or `owner_digest_every` is zero.
    Off,
    /// Another replica (or an earlier call) took this round.
    Skipped {
        /// The round: the clock's time divided by `owner_digest_every`.
        round: i64,
    },
    /// This replica queued a digest for each of these owners.
    Sent {
        /// The round.
        round: i64,
        /// The owners, in order.
        owners: Vec<String>,
    },
}

impl Sweeper {
    /// A sweeper on these parts of the broker.
    pub fn new(
        config: GovernanceConfig,
        store: Arc<dyn Store>,
        entries: Arc<EntryIndex>,
        usage: Arc<UsageTracker>,
        audit: AuditLog,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Sweeper {
            config,
            store,
            entries,
            usage,
            audit,
            clock,
            alerts: None,
        }
    }

    /// Also sends each owner's digest to `sink` every `every` (never when zero).
    #[must_use]
    pub fn with_alerts(mut self, sink: AlertSink, every: Duration, trust_domain: &str) -> Self {
        self.alerts = Some(DigestAlerts {
            sink,
            every,
            trust_domain: trust_domain.to_owned(),
        });
        self
    }

    /// The round `now` falls in (the clock's time divided by `every`), and
    /// whether this replica claimed it first through [`Store::use_once`]
    /// under `<kind>:<round>` (kept until two rounds later).
    async fn claim_round(
        &self,
        kind: &str,
        every: Duration,
        now: i64,
    ) -> Result<(i64, bool), GovernanceError> {
        let every = i64::try_from(every.as_secs().max(1)).unwrap_or(i64::MAX);
        let round = now.div_euclid(every);
        let claimed = self
            .store
            .use_once(
                &format!("{kind}:{round}"),
                round.saturating_add(2).saturating_mul(every),
                now,
            )
            .await?;
        Ok((round, claimed))
    }

    /// One owners' digest round, now, if the webhook is set and no replica took the round
    /// yet: one alert per owner with something to do, each audited as `governance.digest`.
    ///
    /// # Errors
    ///
    /// [`GovernanceError`] when the store cannot coordinate the round or the audit log
    /// cannot record it.
    pub async fn send_owner_digests(&self) -> Result<DigestOutcome, GovernanceError> {
        let Some(alerts) = self.alerts.as_ref().filter(|a| !a.every.is_zero()) else {
            return Ok(DigestOutcome::Off);
        };
        let now = self.clock.unix_now();
        let (round, claimed) = self
            .claim_round("owner-digest-round", alerts.every, now)
            .await?;
        if !claimed {
            return Ok(DigestOutcome::Skipped { round });
        }
        let mut owners = Vec::new();
        let digests = digest::current(&self.entries, &self.usage, now, &self.config, None);
        for digest in digests {
            let counts: serde_json::Map<String, serde_json::Value> = digest
                .counts()
                .iter()
                .map(|(name, n)| ((*name).to_owned(), (*n).into()))
                .collect();
            let body = serde_json::to_value(&digest).unwrap_or_default();
            let alert = Alert::new(
                "owner-digest",
                &alerts.trust_domain,
                now,
                &digest.owner,
                body,
            );
            let delivery = alert.delivery.clone();
            let queued = alerts.sink.send(alert);
            self.audit
                .append(AuditEvent {
                    action: "governance.digest".into(),
                    outcome: Outcome::Ok,
                    actor: GOVERNANCE_ACTOR.into(),
                    reason: queued.as_ref().err().map(ToString::to_string),
                    detail: Some(serde_json::json!({
                        "owner": digest.owner,
                        "counts": counts,
                        "delivery": delivery,
                        "queued": queued.is_ok(),
                    })),
                    ..AuditEvent::default()
                })
                .await
                .map_err(|source| GovernanceError::DigestAudit {
                    owner: digest.owner.clone(),
                    source,
                })?;
            owners.push(digest.owner);
        }
        Ok(DigestOutcome::Sent { round, owners })
    }

    /// Runs until `cancel`: a sweep every `sweep_every`; a failed one is
    /// logged and the next round tries again.
    pub async fn run(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.config.sweep_every) => {}
            }
            if let Err(error) = self.sweep().await {
                tracing::warn!(%error, "governance sweep failed; the next round tries again");
            }
            if let Err(error) = self.send_owner_digests().await {
                tracing::warn!(%error, "the owners' digest failed; the next round tries again");
            }
        }
    }

    /// One round, now (tests and the periodic task).
    ///
    /// # Errors
    ///
    /// [`GovernanceError::Store`] when the round cannot be claimed or a
    /// change saved; [`GovernanceError::Audit`] when a record cannot be
    /// written.
    pub async fn sweep(&self) -> Result<SweepOutcome, GovernanceError> {
        let now = self.clock.unix_now();
        let (round, claimed) = self
            .claim_round("governance-round", self.config.sweep_every, now)
            .await?;
        if !claimed {
            return Ok(SweepOutcome::Skipped { round });
        }
        let mut findings = Vec::new();
        for entry in self.entries.all() {
            if entry.disabled.is_some() {
                continue;
            }
            let Some((rule, action, reason)) = self.judge(&entry, now) else {
                continue;
            };
            let acted = match action {
                GovernanceAction::Disable => self.disable(&entry, rule, &reason, now).await?,
                GovernanceAction::Report => self.report(&entry, rule, &reason, now).await?,
            };
            if acted {
                findings.push(Finding {
                    entry_id: entry.id.to_string(),
                    rule,
                    action,
                    reason,
                });
            }
        }
        Ok(SweepOutcome::Swept { round, findings })
    }

    /// The first rule `entry` breaks at `now` (expired, dormant, review
    /// overdue), what the policy says to do, and the reason with its dates.
    fn judge(&self, entry: &Entry, now: i64) -> Option<(Rule, GovernanceAction, String)> {
        let policy = &self.config;
        if entry.is_expired(now) {
            let reason = format!("expired at {}", rfc3339(entry.expires_at));
            return Some((Rule::Expired, policy.on_expired, reason));
        }
        if let Some(after) = policy.dormant_after {
            let (last_minted, _) = self.usage.usage(&entry.id);
            if is_dormant(entry, last_minted, now, policy) {
                let since = dormant_since(entry, last_minted);
                let what = if last_minted > 0 {
                    format!("last minted at {}", rfc3339(last_minted))
                } else {
                    format!("never minted since its creation at {}", rfc3339(since))
                };
                let reason = format!(
                    "dormant: {what}, [governance] dormant_after = {}",
                    describe_duration(after)
                );
                return Some((Rule::Dormant, policy.on_dormant, reason));
            }
        }
        let due = entry.review_due_at(policy.review_every)?;
        if now >= due {
            let last = entry.last_review.as_ref().map_or_else(
                || {
                    format!(
                        "never reviewed since its creation at {}",
                        rfc3339(entry.created_at)
                    )
                },
                |review| format!("last reviewed at {} by {}", rfc3339(review.at), review.by),
            );
            let reason = format!(
                "owner review overdue since {} ({last}); `mayfly entry review {} --note ...`",
                rfc3339(due),
                entry.id
            );
            return Some((Rule::ReviewOverdue, policy.on_review_overdue, reason));
        }
        None
    }

    /// Disables `entry`; `false` when an operator changed it meanwhile.
    async fn disable(
        &self,
        entry: &Entry,
        rule: Rule,
        reason: &str,
        now: i64,
    ) -> Result<bool, GovernanceError> {
        let Ok(next) = entry.disabled(GOVERNANCE_ACTOR, reason, now) else {
            return Ok(false);
        };
        match self.store.update_entry(&next, entry.revision).await {
            Ok(()) => {}
            // Changed or deleted meanwhile: looked at again next round.
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => return Ok(false),
            Err(error) => return Err(error.into()),
        }
        self.entries.upsert(next.clone());
        tracing::info!(entry_id = %entry.id, spiffe_id = %entry.spiffe_id, rule = rule.as_str(),
            %reason, "governance disabled an entry");
        self.record(
            AuditEvent {
                action: "entry.disable".into(),
                outcome: Outcome::Ok,
                actor: GOVERNANCE_ACTOR.into(),
                entry_id: Some(entry.id.to_string()),
                spiffe_id: Some(entry.spiffe_id.to_string()),
                reason: Some(reason.to_owned()),
                detail: Some(serde_json::json!({
                    "rule": rule.as_str(),
                    "revision": next.revision,
                })),
                ..AuditEvent::default()
            },
            entry,
        )
        .await?;
        Ok(true)
    }

    /// Reports `entry` unless this entry, rule and revision was reported
    /// within [`REPORT_AGAIN_AFTER`]; `true` when it was reported now.
    async fn report(
        &self,
        entry: &Entry,
        rule: Rule,
        reason: &str,
        now: i64,
    ) -> Result<bool, GovernanceError> {
        let key = format!(
            "governance-report:{}:{}:{}",
            entry.id,
            rule.as_str(),
            entry.revision
        );
        let again = i64::try_from(REPORT_AGAIN_AFTER.as_secs()).unwrap_or(i64::MAX);
        if !self
            .store
            .use_once(&key, now.saturating_add(again), now)
            .await?
        {
            return Ok(false);
        }
        tracing::info!(entry_id = %entry.id, spiffe_id = %entry.spiffe_id, owner = %entry.owner,
            rule = rule.as_str(), %reason, "governance report");
        self.record(
            AuditEvent {
                action: "governance.report".into(),
                outcome: Outcome::Ok,
                actor: GOVERNANCE_ACTOR.into(),
                entry_id: Some(entry.id.to_string()),
                spiffe_id: Some(entry.spiffe_id.to_string()),
                reason: Some(reason.to_owned()),
                detail: Some(serde_json::json!({
                    "rule": rule.as_str(),
                    "owner": entry.owner,
                    "revision": entry.revision,
                })),
                ..AuditEvent::default()
            },
            entry,
        )
        .await?;
        Ok(true)
    }

    async fn record(&self, event: AuditEvent, entry: &Entry) -> Result<(), GovernanceError> {
        self.audit
            .append(event)
            .await
            .map(drop)
            .map_err(|source| GovernanceError::Audit {
                entry_id: entry.id.to_string(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_config_writes_them() {
        let d = |s| describe_duration(Duration::from_secs(s));
        assert_eq!(d(90 * 86_400), "90d");
        assert_eq!(d(36 * 3_600), "36h");
        assert_eq!(d(90), "90s");
        assert_eq!(d(0), "0s");
    }
}
