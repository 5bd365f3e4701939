//! The audit witness: with a shared store, every replica publishes its latest signed audit
//! checkpoint there, and checks the other replicas' (issue 15, anchors outside the host).
//!
//! Every [`WITNESS_INTERVAL`] the task started by the server ([`run`]):
//!
//! 1. publishes this replica's latest signed checkpoint ([`AuditLog::checkpoints`]) with
//!    its key hand-overs ([`AuditLog::handovers`]) to the store
//!    ([`Store::publish_audit_checkpoint`], Redis `{prefix}:audit`), again each time, so
//!    that a record lost or overwritten in the store is put back within seconds. At its
//!    next start the replica's log is compared with that record (see `server.rs`), so a
//!    rolled-back or forked log is refused even when its audit key was rolled back too;
//! 2. reads every other replica's record and checks it with [`check_foreign`] against
//!    what it saw of that replica before: the hand-overs follow from the replica's root
//!    key (the first one seen is trusted: trust on first use), the checkpoint is signed by
//!    the key of its epoch, and it never goes backwards (a smaller size, the same size with
//!    another root, a key chain that changed without a restart hand-over carrying an
//!    operator's reason).
//!
//! When the server stops, the task runs on until the log has closed, then publishes the
//! checkpoint written at the close, once.
//!
//! A finding is raised once: one `tracing::warn!`, one `audit.witness.alarm` record in this
//! replica's log (actor `mayfly-audit`, naming the replica, what was seen before and what
//! is published now), one count in `mayfly_audit_witness_findings_total{kind}`. The witness
//! then follows what it sees now (a checkpoint that does not verify is never adopted, and
//! the same one is not reported twice), so each finding marks one break in that replica's
//! history as seen from here.
//!
//! Publishing never blocks issuance: the task is apart from the mint path. While the store
//! cannot be written, failures are counted (`mayfly_audit_witness_publishes_total{outcome}`)
//! and logged once; when publishing works again, one `audit.witness.recovered` record tells
//! how many failed and the first error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::anchor::AnchorRecords;
use crate::audit::{AUDIT_ACTOR, AuditEvent, AuditLog, Seen, WitnessProblem, check_foreign};
use crate::clock::Clock;
use crate::store::{AuditAnchorRecord, Store, StoreError};
use crate::telemetry::BrokerMetrics;

/// How often the witness publishes and checks.
pub const WITNESS_INTERVAL: Duration = Duration::from_secs(2);

/// What this replica's witness accepted last of each other replica: for status and tests.
#[derive(Debug, Default)]
pub struct WitnessView {
    seen: Mutex<BTreeMap<String, Seen>>,
}

impl WitnessView {
    /// Each other replica's checkpoint as last accepted, by replica id.
    pub fn seen(&self) -> BTreeMap<String, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, replica: &str, seen: Seen) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(replica.to_owned(), seen);
    }
}

/// The two store operations the witness needs; the server's store, or a double in tests.
#[async_trait::async_trait]
trait Board: Send + Sync {
    async fn publish(&self, replica: &str, record: &AuditAnchorRecord) -> Result<(), StoreError>;
    async fn read(&self) -> Result<Vec<AuditAnchorRecord>, StoreError>;
}

#[async_trait::async_trait]
impl Board for Arc<dyn Store> {
    async fn publish(&self, replica: &str, record: &AuditAnchorRecord) -> Result<(), StoreError> {
        self.publish_audit_checkpoint(replica, record).await
    }

    async fn read(&self) -> Result<Vec<AuditAnchorRecord>, StoreError> {
        self.audit_checkpoints().await
    }
}

/// Publishes this replica's audit checkpoints to `store` and checks the other replicas'
/// every [`WITNESS_INTERVAL`], until `log_closed` fires; then publishes the closed log's
/// last checkpoint, once. Start it only with a shared store.
pub async fn run(
    replica: String,
    store: Arc<dyn Store>,
    audit: AuditLog,
    metrics: Arc<BrokerMetrics>,
    clock: Arc<dyn Clock>,
    view: Arc<WitnessView>,
    log_closed: CancellationToken,
) {
    metrics.witness_started();
    let mut witness = Witness::new(replica, Box::new(store), audit, metrics, clock, view);
    let mut ticks = tokio::time::interval(WITNESS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = log_closed.cancelled() => break,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            () = log_closed.cancelled() => break,
            () = witness.tick() => {}
        }
    }
    witness.publish().await;
}

/// A store outage, as far as the witness saw it.
#[derive(Debug, Default)]
struct Outage {
    failures: u64,
    first_error: Option<String>,
}

/// What the witness knows of one other replica.
#[derive(Debug, Default)]
struct Watched {
    /// Its checkpoint as last accepted (`None` before the first that verified).
    seen: Option<Seen>,
    /// A digest of the last record that did not verify, so it is reported once.
    last_bad: Option<String>,
}

struct Witness {
    replica: String,
    board: Box<dyn Board>,
    audit: AuditLog,
    metrics: Arc<BrokerMetrics>,
    clock: Arc<dyn Clock>,
    view: Arc<WitnessView>,
    /// This replica's records: rebuilt when the checkpoint changes, its key hand-overs
    /// re-read when the signing key changes.
    records: AnchorRecords,
    publishing: Outage,
    reading: Outage,
    others: BTreeMap<String, Watched>,
}

impl Witness {
    fn new(
        replica: String,
        board: Box<dyn Board>,
        audit: AuditLog,
        metrics: Arc<BrokerMetrics>,
        clock: Arc<dyn Clock>,
        view: Arc<WitnessView>,
    ) -> Self {
        Witness {
            records: AnchorRecords::new(replica.clone()),
            replica,
            board,
            audit,
            metrics,
            clock,
            view,
            publishing: Outage::default(),
            reading: Outage::default(),
            others: BTreeMap::new(),
        }
    }

    async fn tick(&mut self) {
        self.publish().await;
        self.check_others().await;
    }

    /// Publishes the latest checkpoint (again, if unchanged).
    async fn publish(&mut self) {
        let latest = self.audit.checkpoints().borrow().clone();
        let Some(checkpoint) = latest else {
            return;
        };
        let record = match self
            .records
            .record(&self.audit, checkpoint, self.clock.unix_now())
            .await
        {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "cannot build the audit checkpoint record to publish");
                return;
            }
        };
        let published = self.board.publish(&self.replica, &record).await;
        self.metrics.witness_published(published.is_ok());
        match published {
            Ok(()) => self.published_again().await,
            Err(error) => {
                if self.publishing.failures == 0 {
                    tracing::warn!(%error,
                        "audit checkpoint not published to the shared store; issuance goes on, the witness lags");
                }
                self.publishing.failures += 1;
                self.publishing
                    .first_error
                    .get_or_insert_with(|| error.to_string());
            }
        }
    }

    /// Publishing worked: if it had failed before, says so once, in the log.
    async fn published_again(&mut self) {
        let outage = std::mem::take(&mut self.publishing);
        if outage.failures == 0 {
            return;
        }
        tracing::info!(
            failures = outage.failures,
            "audit checkpoints are published to the shared store again"
        );
        let event = AuditEvent {
            action: "audit.witness.recovered".into(),
            actor: AUDIT_ACTOR.into(),
            reason: outage.first_error,
            detail: Some(serde_json::json!({ "failed_publishes": outage.failures })),
            ..AuditEvent::default()
        };
        if let Err(error) = self.audit.append(event).await {
            tracing::warn!(%error, "cannot record that the audit witness recovered");
        }
    }

    /// Reads and checks every other replica's record.
    async fn check_others(&mut self) {
        let records = match self.board.read().await {
            Ok(records) => records,
            Err(error) => {
                if self.reading.failures == 0 {
                    tracing::warn!(%error,
                        "cannot read the other replicas' audit checkpoints; they go unchecked meanwhile");
                }
                self.reading.failures += 1;
                return;
            }
        };
        if std::mem::take(&mut self.reading).failures > 0 {
            tracing::info!("the other replicas' audit checkpoints can be read again");
        }
        for record in records {
            if record.replica != self.replica {
                self.check(&record).await;
            }
        }
    }

    async fn check(&mut self, record: &AuditAnchorRecord) {
        let watched = self.others.entry(record.replica.clone()).or_default();
        let previous = watched.seen.clone();
        let checked = check_foreign(
            &record.replica,
            &record.checkpoint,
            &record.keys,
            previous.as_ref(),
        );
        let problem = match checked {
            Ok(seen) => {
                if let Some(before) = &previous
                    && before.keys.len() <= seen.keys.len()
                    && before.keys.iter().zip(&seen.keys).any(|(a, b)| a != b)
                {
                    tracing::warn!(replica = %record.replica, now = %seen.describe(),
                        "another replica's audit key chain restarted, with an operator's reason in its log");
                }
                watched.last_bad = None;
                watched.seen = Some(seen.clone());
                self.view.set(&record.replica, seen);
                return;
            }
            Err(problem) => problem,
        };
        if let WitnessProblem::BadSignature { .. } = problem {
            let digest = digest(record);
            if watched.last_bad.as_ref() == Some(&digest) {
                return;
            }
            watched.last_bad = Some(digest);
        } else {
            // Follow what is published now: the break is reported, once.
            watched.last_bad = None;
            watched.seen =
                check_foreign(&record.replica, &record.checkpoint, &record.keys, None).ok();
            if let Some(seen) = &watched.seen {
                self.view.set(&record.replica, seen.clone());
            }
        }
        self.raise(record, previous.as_ref(), &problem).await;
    }

    /// One finding: a warning, a count, an audit record.
    async fn raise(
        &self,
        record: &AuditAnchorRecord,
        previous: Option<&Seen>,
        problem: &WitnessProblem,
    ) {
        let kind = problem.kind();
        let before = previous.map_or_else(|| "nothing".to_owned(), Seen::describe);
        let now = format!(
            "seq {} (root {}, epoch {}, signed {})",
            record.checkpoint.seq,
            record
                .checkpoint
                .root
                .get(..16)
                .unwrap_or(&record.checkpoint.root),
            record.checkpoint.epoch,
            record.checkpoint.time
        );
        tracing::warn!(replica = %record.replica, kind, %problem,
            "audit witness: another replica's published checkpoint does not continue what was seen of it");
        self.metrics.witness_finding(kind);
        let event = AuditEvent {
            action: "audit.witness.alarm".into(),
            actor: AUDIT_ACTOR.into(),
            reason: Some(format!("replica {}: {problem}", record.replica)),
            detail: Some(serde_json::json!({
                "replica": record.replica,
                "kind": kind,
                "before": before,
                "now": now,
                "published_at": record.published_at,
            })),
            ..AuditEvent::default()
        };
        if let Err(error) = self.audit.append(event).await {
            tracing::error!(%error, replica = %record.replica, kind,
                "cannot record an audit witness finding");
        }
    }
}

/// What identifies a record's content, to report one that does not verify once.
fn digest(record: &AuditAnchorRecord) -> String {
    let bytes = serde_json::to_vec(&(&record.checkpoint, &record.keys)).unwrap_or_default();
    mayfly_sdk::digest::sha256_hex(&bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::audit::{AuditOptions, SignedCheckpoint};
    use crate::clock::SystemClock;
    use crate::telemetry::Telemetry;

    /// A store double: publishing fails while `failures` is above zero (counting down);
    /// reading answers `others`.
    #[derive(Default)]
    struct Double {
        failures: AtomicU32,
        published: Mutex<Vec<AuditAnchorRecord>>,
        others: Mutex<Vec<AuditAnchorRecord>>,
    }

    #[async_trait::async_trait]
    impl Board for Arc<Double> {
        async fn publish(
            &self,
            _replica: &str,
            record: &AuditAnchorRecord,
        ) -> Result<(), StoreError> {
            let failing = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(StoreError::Unavailable {
                    reason: "redis 127.0.0.1:1: connection refused".into(),
                });
            }
            self.published.lock().unwrap().push(record.clone());
            Ok(())
        }

        async fn read(&self) -> Result<Vec<AuditAnchorRecord>, StoreError> {
            Ok(self.others.lock().unwrap().clone())
        }
    }

    fn open_log(dir: &Path, replica: &str) -> AuditLog {
        let mut options = AuditOptions::new(dir.join("key"));
        options.replica = replica.into();
        AuditLog::open_with(&dir.join("audit"), &options).unwrap()
    }

    fn witness(log: &AuditLog, double: &Arc<Double>, telemetry: &Telemetry) -> Witness {
        Witness::new(
            "a".into(),
            Box::new(double.clone()),
            log.clone(),
            telemetry.metrics().clone(),
            Arc::new(SystemClock),
            Arc::new(WitnessView::default()),
        )
    }

    /// The records of `action` in the log of `log`.
    fn records(log: &AuditLog, action: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(log.dir().join("audit.log"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|record| record["action"] == action)
            .collect()
    }

    /// The value of the Prometheus sample `series` (0 when absent).
    fn sample(telemetry: &Telemetry, series: &str) -> f64 {
        let text = telemetry.render().unwrap();
        text.lines()
            .filter_map(|line| line.strip_prefix(series))
            .filter_map(|rest| rest.strip_prefix(' '))
            .map(|value| value.parse::<f64>().unwrap())
            .next()
            .unwrap_or(0.0)
    }

    /// Appends one record and waits for the signed checkpoint that covers it.
    async fn advance(log: &AuditLog, n: u64) -> SignedCheckpoint {
        let receipt = log
            .append(AuditEvent {
                action: "jwt.mint".into(),
                actor: format!("spiffe://example.org/w{n}"),
                ..AuditEvent::default()
            })
            .await
            .unwrap();
        let mut checkpoints = log.checkpoints();
        let found = tokio::time::timeout(
            Duration::from_secs(10),
            checkpoints.wait_for(|c| c.as_ref().is_some_and(|c| c.seq >= receipt.seq)),
        )
        .await
        .expect("a checkpoint within 10 s")
        .unwrap()
        .clone();
        found.unwrap()
    }

    #[tokio::test]
    async fn publishing_failures_never_block_the_log_and_recovery_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path(), "a");
        let telemetry = Telemetry::new();
        let double = Arc::new(Double::default());
        let mut witness = witness(&log, &double, &telemetry);
        let failed = r#"mayfly_audit_witness_publishes_total{outcome="failed"}"#;
        let ok = r#"mayfly_audit_witness_publishes_total{outcome="ok"}"#;

        // Positive control: publishing works, nothing to recover from.
        witness.tick().await;
        witness.tick().await;
        assert_eq!(double.published.lock().unwrap().len(), 2);
        assert!(records(&log, "audit.witness.recovered").is_empty());
        let first = double.published.lock().unwrap()[0].clone();
        assert_eq!(first.replica, "a");
        assert_eq!(first.keys.len(), 1, "the root key's hand-over");
        assert!(check_foreign("a", &first.checkpoint, &first.keys, None).is_ok());

        // The store fails three times; the log goes on meanwhile.
        double.failures.store(3, Ordering::SeqCst);
        for n in 0..3 {
            advance(&log, n).await;
            witness.tick().await;
        }
        assert_eq!(double.published.lock().unwrap().len(), 2);
        assert!(records(&log, "audit.witness.recovered").is_empty());
        assert_eq!(sample(&telemetry, failed), 3.0);

        // It works again: one record says so, and no more after.
        for _ in 0..3 {
            witness.tick().await;
        }
        let recovered = records(&log, "audit.witness.recovered");
        assert_eq!(recovered.len(), 1, "{recovered:?}");
        assert_eq!(recovered[0]["actor"], AUDIT_ACTOR);
        assert_eq!(recovered[0]["detail"]["failed_publishes"], 3);
        assert!(
            recovered[0]["reason"]
                .as_str()
                .unwrap()
                .contains("connection refused")
        );
        assert_eq!(sample(&telemetry, ok), 5.0);
        let last = double.published.lock().unwrap().last().cloned().unwrap();
        assert!(
            last.checkpoint.seq > first.checkpoint.seq,
            "the latest head"
        );
        log.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_finding_is_raised_once_and_the_witness_follows_on() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(&dir.path().join("a"), "a");
        let other = open_log(&dir.path().join("b"), "b");
        let telemetry = Telemetry::new();
        let double = Arc::new(Double::default());
        let mut witness = witness(&log, &double, &telemetry);
        let record = |checkpoint: SignedCheckpoint| AuditAnchorRecord {
            replica: "b".into(),
            checkpoint,
            keys: other.handovers().unwrap(),
            published_at: 0,
        };
        let older = advance(&other, 1).await;
        let newer = advance(&other, 2).await;
        assert!(newer.seq > older.seq);
        let alarms = || records(&log, "audit.witness.alarm");
        let regressed = r#"mayfly_audit_witness_findings_total{kind="regressed"}"#;
        let bad = r#"mayfly_audit_witness_findings_total{kind="bad_signature"}"#;

        // Positive control: forward, then unchanged.
        *double.others.lock().unwrap() = vec![record(older.clone())];
        witness.tick().await;
        *double.others.lock().unwrap() = vec![record(newer.clone())];
        witness.tick().await;
        witness.tick().await;
        assert!(alarms().is_empty(), "{:?}", alarms());
        assert_eq!(witness.view.seen()["b"].seq, newer.seq);

        // Back to the older checkpoint: one finding, however often it is read.
        *double.others.lock().unwrap() = vec![record(older.clone())];
        for _ in 0..3 {
            witness.tick().await;
        }
        let found = alarms();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0]["actor"], AUDIT_ACTOR);
        assert_eq!(found[0]["detail"]["replica"], "b");
        assert_eq!(found[0]["detail"]["kind"], "regressed");
        let before = found[0]["detail"]["before"].as_str().unwrap();
        assert!(before.contains(&format!("seq {}", newer.seq)), "{before}");
        let now = found[0]["detail"]["now"].as_str().unwrap();
        assert!(now.contains(&format!("seq {}", older.seq)), "{now}");
        assert_eq!(sample(&telemetry, regressed), 1.0);

        // A signature altered: one finding, and it is not adopted.
        let mut altered = newer.clone();
        altered.signature = altered.signature.replacen(|_| true, "A", 1);
        if altered.signature == newer.signature {
            altered.signature = newer.signature.replacen('A', "B", 1);
        }
        *double.others.lock().unwrap() = vec![record(altered)];
        for _ in 0..3 {
            witness.tick().await;
        }
        assert_eq!(sample(&telemetry, bad), 1.0);
        assert_eq!(witness.view.seen()["b"].seq, older.seq, "not adopted");

        // The replica's own record again: forward from where it was seen last.
        *double.others.lock().unwrap() = vec![record(newer.clone())];
        witness.tick().await;
        assert_eq!(alarms().len(), 2);
        assert_eq!(witness.view.seen()["b"].seq, newer.seq);
        assert_eq!(sample(&telemetry, regressed), 1.0);
        log.close().await.unwrap();
        other.close().await.unwrap();
    }
}
