//! Anchors of the audit log outside the host, besides the anchor file (which the audit
//! checkpoint thread writes itself) and the Redis witness ([`crate::witness`]): an HTTP
//! witness (`[audit] anchor_url`, [`http`]) and syslog (`[audit] anchor_syslog`,
//! [`syslog`]). Issue 15: "a configurable sink (an HTTP endpoint, a file on another
//! volume, syslog)".
//!
//! Each configured sink is one task ([`run`]), off the mint path: it follows the log's
//! signed checkpoints ([`AuditLog::checkpoints`]) and sends each new one, at most once per
//! [`SEND_INTERVAL`], and while it fails tries again every [`RETRY_INTERVAL`] even when the
//! log is idle: the file anchor's rhythm. Each try is counted in
//! `mayfly_audit_anchor_writes_total{sink, outcome}` and recorded in the sink's
//! [`AnchorHealth`], which `mayfly status` shows (one line per anchor) and which turns the
//! end of an outage into one `audit.anchor.recovered` record. A sink that is away never
//! blocks issuance, nor the start: at start the HTTP witness is read
//! ([`Sinks::read_at_start`]) and its checkpoint compared with the log like the anchor
//! file's (a rollback or fork is refused, naming `http anchor <url>`), but a witness that
//! cannot be read is a warning, not a refusal.
//!
//! The tasks run on while a stopping server drains its requests, and stop once the log has
//! closed: each sends the log's last checkpoint first (the one written at the close), so
//! a witness holds the whole log, not one about a second older. The server waits for that
//! send at most [`LAST_SEND_TIMEOUT`](crate::server::LAST_SEND_TIMEOUT).

mod error;
pub mod http;
pub mod syslog;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::{AnchorHealth, AuditLog, CommitObserver as _, SignedCheckpoint};
use crate::store::AuditAnchorRecord;
use crate::telemetry::BrokerMetrics;

pub use error::{AnchorError, SinkError};
pub use http::{AnchorUrl, HttpAnchor, HttpAnchorConfig};
pub use syslog::{SyslogAnchor, SyslogTarget};

/// The shortest time between two checkpoints sent to one sink.
pub const SEND_INTERVAL: Duration = Duration::from_secs(1);
/// While a sink fails, it is tried again this often even when no new checkpoint arrives:
/// the anchor file's rhythm, one constant for every anchor.
pub const RETRY_INTERVAL: Duration = crate::audit::ANCHOR_RETRY;

/// The configured sinks, each with its health; built before the audit log opens, so the
/// HTTP witness can be read first.
#[derive(Debug, Default)]
pub struct Sinks {
    sinks: Vec<Sink>,
}

/// One sink and how it fares.
#[derive(Debug)]
pub struct Sink {
    kind: SinkKind,
    health: Arc<AnchorHealth>,
}

#[derive(Debug)]
enum SinkKind {
    Http(Box<HttpAnchor>),
    Syslog(SyslogAnchor),
}

impl Sinks {
    /// The sinks configured (`[audit] anchor_url`, `anchor_syslog`); none when neither is.
    ///
    /// # Errors
    /// As [`HttpAnchor::new`]: a CA or token file that cannot be used.
    pub fn open(
        http: Option<&HttpAnchorConfig>,
        syslog: Option<&SyslogTarget>,
    ) -> Result<Sinks, AnchorError> {
        let mut sinks = Vec::new();
        if let Some(http) = http {
            let anchor = HttpAnchor::new(http)?;
            sinks.push(Sink {
                health: Arc::new(AnchorHealth::new("http", anchor.url().to_string())),
                kind: SinkKind::Http(Box::new(anchor)),
            });
        }
        if let Some(target) = syslog {
            sinks.push(Sink {
                health: Arc::new(AnchorHealth::new("syslog", target.to_string())),
                kind: SinkKind::Syslog(SyslogAnchor::new(target.clone())),
            });
        }
        Ok(Sinks { sinks })
    }

    /// The checkpoints the sinks hold of this log, each named by where it came from
    /// (`http anchor <url>`), for [`AuditOptions::anchored`](crate::audit::AuditOptions):
    /// what the HTTP witness answers to a GET. None yet (404) is an info line; a witness
    /// that cannot be read, or answers something else, is a warning and a failed try of
    /// the sink (shown by `mayfly status` until it takes a checkpoint): the broker starts
    /// without that comparison.
    pub async fn read_at_start(&self) -> Vec<(String, SignedCheckpoint)> {
        let mut anchored = Vec::new();
        for sink in &self.sinks {
            let SinkKind::Http(anchor) = &sink.kind else {
                continue;
            };
            let source = format!("http anchor {}", anchor.url());
            match anchor.read().await {
                Ok(Some(record)) => anchored.push((source, record.checkpoint)),
                Ok(None) => tracing::info!(%source, "no anchored audit checkpoint yet"),
                Err(error) => {
                    tracing::warn!(%source, %error,
                        "the HTTP anchor cannot be read; starting without comparing against it");
                    sink.health
                        .record_logged_failure(format!("read at start: {error}"));
                }
            }
        }
        anchored
    }

    /// Hands the sinks over to `audit`'s status, and returns them for [`run`].
    pub fn attach(self, audit: &AuditLog) -> Vec<Sink> {
        for sink in &self.sinks {
            audit.add_anchor(Arc::clone(&sink.health));
        }
        self.sinks
    }
}

impl Sink {
    /// `http` or `syslog`.
    pub fn kind(&self) -> &'static str {
        self.health.sink()
    }

    /// How it fares.
    pub fn health(&self) -> &Arc<AnchorHealth> {
        &self.health
    }

    /// One try: sends `checkpoint`, counts the outcome in `metrics` and records it in the
    /// health; true if the sink took it.
    async fn try_send(
        &mut self,
        checkpoint: &SignedCheckpoint,
        records: &mut AnchorRecords,
        audit: &AuditLog,
        metrics: &BrokerMetrics,
    ) -> bool {
        let sent = self.send(checkpoint, records, audit).await;
        metrics.anchored(self.kind(), sent.is_ok(), checkpoint.seq);
        let taken = sent.is_ok();
        self.health.record(sent.map_err(|error| error.to_string()));
        taken
    }

    async fn send(
        &mut self,
        checkpoint: &SignedCheckpoint,
        records: &mut AnchorRecords,
        audit: &AuditLog,
    ) -> Result<(), SinkError> {
        match &mut self.kind {
            SinkKind::Http(anchor) => {
                let record = records
                    .record(audit, checkpoint.clone(), unix_now())
                    .await?;
                anchor.publish(&record).await
            }
            SinkKind::Syslog(anchor) => anchor.send(checkpoint).await,
        }
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Sends `audit`'s signed checkpoints to `sink` until `log_closed` fires: each new one, at
/// most once per [`SEND_INTERVAL`], and the latest again every [`RETRY_INTERVAL`] while
/// the sink fails; then the closed log's last checkpoint, once, unless the sink has it.
/// Each try is counted in `metrics` and recorded in the sink's health; the end of an
/// outage is appended to the log, once, while it is open.
pub async fn run(
    mut sink: Sink,
    replica: String,
    audit: AuditLog,
    metrics: Arc<BrokerMetrics>,
    log_closed: CancellationToken,
) {
    let mut checkpoints = audit.checkpoints();
    checkpoints.mark_changed();
    let mut records = AnchorRecords::new(replica);
    let mut taken: Option<SignedCheckpoint> = None;
    loop {
        let failing = sink.health.failing().is_some();
        tokio::select! {
            () = log_closed.cancelled() => break,
            changed = checkpoints.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(RETRY_INTERVAL), if failing => {}
        }
        let latest = checkpoints.borrow_and_update().clone();
        let Some(checkpoint) = latest else {
            continue;
        };
        if !failing && taken.as_ref() == Some(&checkpoint) {
            continue;
        }
        let started = tokio::time::Instant::now();
        // Not cut short when the log closes: the last checkpoint follows this send.
        if sink
            .try_send(&checkpoint, &mut records, &audit, &metrics)
            .await
        {
            taken = Some(checkpoint);
        }
        if let Some(outage) = sink.health.take_recovery() {
            tracing::info!(
                sink = outage.sink,
                failures = outage.failures,
                "audit checkpoints are anchored again"
            );
            if let Err(error) = audit.append(outage.event()).await {
                tracing::warn!(%error, sink = outage.sink,
                    "cannot record that the audit anchor recovered");
            }
        }
        tokio::select! {
            () = log_closed.cancelled() => break,
            () = tokio::time::sleep_until(started + SEND_INTERVAL) => {}
        }
    }
    let last = checkpoints.borrow().clone();
    if let Some(checkpoint) = last
        && taken.as_ref() != Some(&checkpoint)
        && !sink
            .try_send(&checkpoint, &mut records, &audit, &metrics)
            .await
    {
        tracing::warn!(
            sink = sink.kind(),
            seq = checkpoint.seq,
            "the audit log's last checkpoint did not reach the anchor; it holds an earlier one"
        );
    }
}

/// This replica's checkpoints as [`AuditAnchorRecord`]s (what the HTTP witness and the
/// shared store keep): the key hand-overs are read again only when another key signed the
/// checkpoint.
#[derive(Debug)]
pub struct AnchorRecords {
    replica: String,
    last: Option<AuditAnchorRecord>,
}

impl AnchorRecords {
    /// Records of `replica`'s log.
    pub fn new(replica: String) -> Self {
        AnchorRecords {
            replica,
            last: None,
        }
    }

    /// The record of `checkpoint`, published at `published_at` (Unix seconds).
    ///
    /// # Errors
    /// [`SinkError::Keys`] if `keys.jsonl` cannot be read.
    pub async fn record(
        &mut self,
        audit: &AuditLog,
        checkpoint: SignedCheckpoint,
        published_at: i64,
    ) -> Result<AuditAnchorRecord, SinkError> {
        let keys = match &self.last {
            Some(last) if last.checkpoint.key == checkpoint.key => last.keys.clone(),
            _ => {
                let audit = audit.clone();
                tokio::task::spawn_blocking(move || audit.handovers())
                    .await
                    .map_err(|e| SinkError::Keys(e.to_string()))?
                    .map_err(|e| SinkError::Keys(e.to_string()))?
            }
        };
        let record = AuditAnchorRecord {
            replica: self.replica.clone(),
            checkpoint,
            keys,
            published_at,
        };
        self.last = Some(record.clone());
        Ok(record)
    }
}

#[cfg(test)]
mod tests;
