//! Alerts: messages the broker sends to people, not to workloads — the owners' governance
//! digest ([`crate::governance::digest`]), `mayfly alerts test`, and every later kind.
//!
//! Producers hand an [`Alert`] to the [`AlertSink`] ([`AlertSink::send`], or
//! [`AlertSink::deliver`] to wait for its fate). The sink fans each alert out to its
//! [`Output`]s, configured in `[alerts]`:
//! - `webhook` ([`webhook`]): an HMAC-signed JSON `POST` to `webhook_url`;
//! - `otel_logs` ([`otel_logs`]): an OpenTelemetry log record (event `mayfly.alert`,
//!   severity WARN) exported over OTLP to the `[telemetry]` collector.
//!
//! Each output has its own bounded queue and its own task, which tries again (after 1, 2,
//! 4 and 8 s) while the receiver is briefly away.
//!
//! Invariants, and why:
//! - **Nothing is unbounded.** Each output's queue holds [`QUEUE_CAPACITY`] alerts; a full
//!   queue refuses the new one for that output rather than grow (counted as
//!   `mayfly_alert_deliveries_total{outcome="refused"}` and logged), and when every output
//!   refused it, [`AlertSink::send`] says so ([`AlertError::QueueFull`]) and the producer
//!   audits it. Each alert is tried at most [`MAX_TRIES`] times per output.
//! - **One slow output does not hold the other back**: the outputs share nothing but the
//!   alert, so a webhook that times out five times in a row delays only its own queue.
//! - **Delivery is evidence.** Each alert's fate at each output is an audit record:
//!   `alert.delivered`, or `alert.undelivered` with the last error once every try failed,
//!   with the output, its URL and the delivery id the receiver saw, so that "the owner was
//!   told" can be shown later.
//! - **The same alert everywhere**: every output gets the same delivery id, so a receiver
//!   of both can match them, and every try of one alert carries it.
//! - **Shutdown does not wait on a receiver:** the tasks stop at once when cancelled;
//!   alerts still queued are lost, and the next digest round reports the same facts again.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mayfly_telemetry::OtlpLogs;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::clock::Clock;
use crate::telemetry::BrokerMetrics;

pub mod otel_logs;
pub mod webhook;

pub use webhook::{Webhook, WebhookConfig, WebhookError};

/// Alerts waiting for delivery at each output, at most.
pub const QUEUE_CAPACITY: usize = 256;
/// Tries of one alert at one output, the first included.
pub const MAX_TRIES: u32 = webhook::MAX_TRIES;
/// The wait before the second try; it doubles before each next one.
pub const FIRST_RETRY_AFTER: Duration = webhook::FIRST_RETRY_AFTER;

/// The actor of the audit records the sink writes.
const ACTOR: &str = "mayfly-alerts";

/// One alert: what the webhook receives as its JSON body, and what the OTel log record's
/// attributes hold ([`otel_logs::event`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// What it is about (`owner-digest`); also the `Mayfly-Event` header.
    pub kind: &'static str,
    /// Unique per alert and the same on every try; also the `Mayfly-Delivery` header.
    pub delivery: String,
    /// The trust domain of the broker that sent it.
    pub trust_domain: String,
    /// Unix seconds when the broker made it.
    pub generated_at: i64,
    /// Who it is for (an entry owner), as the audit log names it.
    pub subject: String,
    /// The alert itself; its shape depends on `kind`.
    pub body: serde_json::Value,
}

impl Alert {
    /// A new alert with a fresh delivery id.
    pub fn new(
        kind: &'static str,
        trust_domain: &str,
        generated_at: i64,
        subject: &str,
        body: serde_json::Value,
    ) -> Self {
        let mut id = [0u8; 16];
        // The system RNG failing is not something the broker can run without.
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(&mut id).expect("system random number generator failed");
        Alert {
            kind,
            delivery: hex::encode(id),
            trust_domain: trust_domain.to_owned(),
            generated_at,
            subject: subject.to_owned(),
            body,
        }
    }
}

/// Why an alert was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// Every output's queue holds [`QUEUE_CAPACITY`] alerts already.
    #[error("the alert queue is full ({QUEUE_CAPACITY} waiting at each output)")]
    QueueFull,
    /// The delivering task has stopped (the server is shutting down).
    #[error("the alert sink has stopped")]
    Stopped,
}

/// What became of one alert at one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The receiver's URL (the webhook's, or the OTLP collector's).
    pub url: String,
    /// Tries made.
    pub tries: u32,
    /// `None` when delivered, else the last try's error.
    pub error: Option<String>,
}

/// What became of one alert at one named output ([`AlertSink::deliver_each`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fate {
    /// The output: `webhook` or `otel_logs`.
    pub output: &'static str,
    /// What became of the alert there.
    pub delivery: Delivery,
}

/// Where alerts go: one of the `[alerts]` outputs.
pub enum Output {
    /// `webhook_url`: an HMAC-signed JSON `POST`.
    Webhook(Webhook),
    /// `otel_logs = true`: an OpenTelemetry log record, exported over OTLP.
    OtelLogs(OtlpLogs),
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Webhook(webhook) => f.debug_tuple("Webhook").field(webhook).finish(),
            Output::OtelLogs(logs) => f.debug_tuple("OtelLogs").field(logs).finish(),
        }
    }
}

/// Why one try at one output failed, and whether another may succeed.
struct TryFailure {
    error: String,
    transient: bool,
}

impl Output {
    /// Its name in metrics, audit records and `mayfly alerts test`.
    pub fn name(&self) -> &'static str {
        match self {
            Output::Webhook(_) => "webhook",
            Output::OtelLogs(_) => "otel_logs",
        }
    }

    /// The receiver's URL.
    pub fn url(&self) -> String {
        match self {
            Output::Webhook(webhook) => webhook.url().to_string(),
            Output::OtelLogs(logs) => logs.url().to_owned(),
        }
    }

    /// One try of `alert` at `now` (Unix seconds).
    async fn try_once(&self, alert: &Alert, now: i64) -> Result<(), TryFailure> {
        match self {
            Output::Webhook(webhook) => {
                let body = serde_json::to_vec(alert).map_err(|error| TryFailure {
                    error: format!("cannot encode the alert: {error}"),
                    transient: false,
                })?;
                webhook
                    .post(alert.kind, &alert.delivery, &body, now)
                    .await
                    .map_err(|error| TryFailure {
                        transient: error.is_transient(),
                        error: error.to_string(),
                    })
            }
            Output::OtelLogs(logs) => {
                logs.export(&otel_logs::event(alert, now))
                    .await
                    .map_err(|error| TryFailure {
                        transient: error.is_transient(),
                        error: error.to_string(),
                    })
            }
        }
    }
}

/// An alert waiting, and who waits for its fate.
#[derive(Debug)]
struct Queued {
    alert: Alert,
    done: Option<oneshot::Sender<Delivery>>,
}

/// One output's queue, as the producers see it.
#[derive(Debug, Clone)]
struct Lane {
    output: &'static str,
    url: String,
    queue: mpsc::Sender<Queued>,
}

/// The producers' end of the outputs' queues; cheap to clone.
#[derive(Clone)]
pub struct AlertSink {
    lanes: Arc<[Lane]>,
    metrics: Arc<BrokerMetrics>,
}

impl fmt::Debug for AlertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertSink")
            .field("lanes", &self.lanes)
            .finish_non_exhaustive()
    }
}

/// What one output's queue said to an alert.
enum Offer {
    Taken,
    Full,
    Stopped,
}

impl AlertSink {
    /// Queues `alert` at every output; never waits. An output whose queue is full drops
    /// it (counted and logged); the others still take it.
    ///
    /// # Errors
    /// [`AlertError::QueueFull`] when no output took it because every queue was full;
    /// [`AlertError::Stopped`] after shutdown.
    pub fn send(&self, alert: Alert) -> Result<(), AlertError> {
        let mut taken = false;
        let mut full = false;
        for lane in self.lanes.iter() {
            match self.offer(lane, &alert, None) {
                Offer::Taken => taken = true,
                Offer::Full => full = true,
                Offer::Stopped => {}
            }
        }
        match (taken, full) {
            (true, _) => Ok(()),
            (false, true) => Err(AlertError::QueueFull),
            (false, false) => Err(AlertError::Stopped),
        }
    }

    /// Queues `alert` and waits for its fate: every try, with the waits between them.
    /// With several outputs, the first output's fate where it failed, else the first
    /// output's ([`deliver_each`](Self::deliver_each) tells them apart).
    ///
    /// # Errors
    /// As [`deliver_each`](Self::deliver_each).
    pub async fn deliver(&self, alert: Alert) -> Result<Delivery, AlertError> {
        let fates = self.deliver_each(alert).await?;
        let failed = fates.iter().position(|fate| fate.delivery.error.is_some());
        fates
            .into_iter()
            .nth(failed.unwrap_or(0))
            .map(|fate| fate.delivery)
            .ok_or(AlertError::Stopped)
    }

    /// Queues `alert` at every output and waits for its fate at each, in the order of
    /// the configuration (`mayfly alerts test`). An output whose queue is full is
    /// reported as not delivered, after no try.
    ///
    /// # Errors
    /// [`AlertError::QueueFull`] when every output's queue is full;
    /// [`AlertError::Stopped`] if the server stops first.
    pub async fn deliver_each(&self, alert: Alert) -> Result<Vec<Fate>, AlertError> {
        let mut waiting = Vec::with_capacity(self.lanes.len());
        for lane in self.lanes.iter() {
            let (done, fate) = oneshot::channel();
            match self.offer(lane, &alert, Some(done)) {
                Offer::Taken => waiting.push((lane, Some(fate))),
                Offer::Full => waiting.push((lane, None)),
                Offer::Stopped => return Err(AlertError::Stopped),
            }
        }
        if waiting.iter().all(|(_, fate)| fate.is_none()) {
            return Err(AlertError::QueueFull);
        }
        let mut fates = Vec::with_capacity(waiting.len());
        for (lane, fate) in waiting {
            let delivery = match fate {
                Some(fate) => fate.await.map_err(|_| AlertError::Stopped)?,
                None => Delivery {
                    url: lane.url.clone(),
                    tries: 0,
                    error: Some(format!(
                        "its queue is full ({QUEUE_CAPACITY} alerts waiting)"
                    )),
                },
            };
            fates.push(Fate {
                output: lane.output,
                delivery,
            });
        }
        Ok(fates)
    }

    /// The outputs, in order: their names and URLs.
    pub fn outputs(&self) -> Vec<(&'static str, String)> {
        self.lanes
            .iter()
            .map(|lane| (lane.output, lane.url.clone()))
            .collect()
    }

    fn offer(&self, lane: &Lane, alert: &Alert, done: Option<oneshot::Sender<Delivery>>) -> Offer {
        let queued = Queued {
            alert: alert.clone(),
            done,
        };
        match lane.queue.try_send(queued) {
            Ok(()) => Offer::Taken,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.alert_delivery(lane.output, "refused");
                tracing::warn!(output = lane.output, kind = alert.kind, delivery = %alert.delivery,
                    "an alert output's queue is full; it drops this alert");
                Offer::Full
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Stopped,
        }
    }
}

/// A task of the sink, to spawn.
pub type OutputTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Starts delivering to `outputs`: the sink, and one task per output to spawn (each runs
/// until `cancel`).
pub fn start(
    outputs: Vec<Output>,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    metrics: Arc<BrokerMetrics>,
    cancel: CancellationToken,
) -> (AlertSink, Vec<OutputTask>) {
    let mut lanes = Vec::with_capacity(outputs.len());
    let mut tasks: Vec<OutputTask> = Vec::with_capacity(outputs.len());
    for output in outputs {
        let (queue, waiting) = mpsc::channel::<Queued>(QUEUE_CAPACITY);
        lanes.push(Lane {
            output: output.name(),
            url: output.url(),
            queue,
        });
        tasks.push(Box::pin(run(
            output,
            waiting,
            audit.clone(),
            clock.clone(),
            metrics.clone(),
            cancel.clone(),
        )));
    }
    let sink = AlertSink {
        lanes: lanes.into(),
        metrics,
    };
    (sink, tasks)
}

/// One output's task: its queue's alerts, one after the other.
async fn run(
    output: Output,
    mut waiting: mpsc::Receiver<Queued>,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    metrics: Arc<BrokerMetrics>,
    cancel: CancellationToken,
) {
    loop {
        let queued = tokio::select! {
            () = cancel.cancelled() => return,
            queued = waiting.recv() => match queued {
                Some(queued) => queued,
                None => return,
            },
        };
        let delivery = tokio::select! {
            () = cancel.cancelled() => return,
            delivery = deliver(&output, &queued.alert, &audit, clock.as_ref(), &metrics) => delivery,
        };
        if let Some(done) = queued.done {
            // The waiter may have given up; the audit record holds the fate anyway.
            let _ = done.send(delivery);
        }
    }
}

/// Tries `alert` at `output` until it is delivered, a final failure, or [`MAX_TRIES`];
/// audits the outcome.
async fn deliver(
    output: &Output,
    alert: &Alert,
    audit: &AuditLog,
    clock: &dyn Clock,
    metrics: &BrokerMetrics,
) -> Delivery {
    let name = output.name();
    let url = output.url();
    let mut wait = FIRST_RETRY_AFTER;
    let mut tries = 0;
    let result = loop {
        tries += 1;
        let result = output.try_once(alert, clock.unix_now()).await;
        match &result {
            Err(failure) if failure.transient && tries < MAX_TRIES => {
                metrics.alert_delivery(name, "retried");
                tracing::info!(output = name, kind = alert.kind, delivery = %alert.delivery,
                    error = %failure.error, tries, "an alert output did not take an alert; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
            _ => break result,
        }
    };
    let (action, reason) = match &result {
        Ok(()) => {
            metrics.alert_delivery(name, "delivered");
            ("alert.delivered", None)
        }
        Err(failure) => {
            metrics.alert_delivery(name, "failed");
            tracing::warn!(output = name, kind = alert.kind, delivery = %alert.delivery, %url,
                error = %failure.error, tries, "an alert could not be delivered");
            ("alert.undelivered", Some(failure.error.clone()))
        }
    };
    let record = AuditEvent {
        action: action.into(),
        outcome: Outcome::Ok,
        actor: ACTOR.into(),
        reason,
        detail: Some(serde_json::json!({
            "kind": alert.kind,
            "subject": alert.subject,
            "delivery": alert.delivery,
            "output": name,
            "tries": tries,
            "url": url,
        })),
        ..AuditEvent::default()
    };
    if let Err(error) = audit.append(record).await {
        tracing::warn!(%error, delivery = %alert.delivery, output = name,
            "cannot audit an alert's delivery");
    }
    Delivery {
        url,
        tries,
        error: result.err().map(|failure| failure.error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Telemetry;

    /// A sink over two lanes of capacity one whose queues the test reads itself, as the
    /// outputs' tasks would.
    fn sink(telemetry: &Telemetry) -> (AlertSink, Vec<mpsc::Receiver<Queued>>) {
        let mut lanes = Vec::new();
        let mut receivers = Vec::new();
        for (output, url) in [
            ("webhook", "http://127.0.0.1:9/alerts"),
            ("otel_logs", "http://127.0.0.1:9"),
        ] {
            let (queue, waiting) = mpsc::channel(1);
            lanes.push(Lane {
                output,
                url: url.to_owned(),
                queue,
            });
            receivers.push(waiting);
        }
        let sink = AlertSink {
            lanes: lanes.into(),
            metrics: telemetry.metrics().clone(),
        };
        (sink, receivers)
    }

    fn alert() -> Alert {
        Alert::new(
            "test",
            "example.org",
            1_800_000_000,
            "ops",
            serde_json::json!({}),
        )
    }

    #[test]
    fn a_full_queue_drops_the_alert_for_its_output_only() {
        let telemetry = Telemetry::new();
        let (sink, mut receivers) = sink(&telemetry);
        // Positive control: both outputs take the first alert, with one delivery id.
        let first = alert();
        sink.send(first.clone()).unwrap();
        let webhook = receivers[0].try_recv().unwrap().alert;
        assert_eq!(webhook.delivery, first.delivery);
        // The log output has not taken its copy off the queue: that queue is full, the
        // webhook's is not; the alert still goes to the webhook.
        let second = alert();
        sink.send(second.clone()).unwrap();
        assert_eq!(
            receivers[0].try_recv().unwrap().alert.delivery,
            second.delivery
        );
        assert_eq!(
            receivers[1].try_recv().unwrap().alert.delivery,
            first.delivery
        );
        assert!(
            receivers[1].try_recv().is_err(),
            "the second was dropped there"
        );
        let text = telemetry.render().unwrap();
        assert!(
            text.lines()
                .any(|line| line.starts_with("mayfly_alert_deliveries_total{")
                    && line.contains("output=\"otel_logs\"")
                    && line.contains("outcome=\"refused\"")
                    && line.ends_with(" 1")),
            "{text}"
        );
        // Every queue full: the producer is told.
        sink.send(alert()).unwrap();
        assert_eq!(sink.send(alert()), Err(AlertError::QueueFull));
        // After shutdown: stopped.
        drop(receivers);
        assert_eq!(sink.send(alert()), Err(AlertError::Stopped));
    }

    #[tokio::test]
    async fn deliver_each_says_what_became_of_the_alert_at_each_output() {
        let telemetry = Telemetry::new();
        let (sink, mut receivers) = sink(&telemetry);
        let mut webhook = receivers.remove(0);
        let logs = receivers.remove(0);
        // The log output's queue is full; the webhook's task answers.
        sink.lanes[1]
            .queue
            .try_send(Queued {
                alert: alert(),
                done: None,
            })
            .unwrap();
        let answering = tokio::spawn(async move {
            let queued = webhook.recv().await.unwrap();
            queued
                .done
                .unwrap()
                .send(Delivery {
                    url: "http://127.0.0.1:9/alerts".into(),
                    tries: 1,
                    error: None,
                })
                .unwrap();
        });
        let fates = sink.deliver_each(alert()).await.unwrap();
        answering.await.unwrap();
        assert_eq!(fates.len(), 2);
        assert_eq!(fates[0].output, "webhook");
        assert_eq!(fates[0].delivery.error, None);
        assert_eq!(fates[1].output, "otel_logs");
        assert_eq!(fates[1].delivery.tries, 0);
        assert!(
            fates[1]
                .delivery
                .error
                .as_deref()
                .unwrap()
                .contains("queue is full"),
            "{fates:?}"
        );
        // Held until here, so that the log output's lane is full rather than stopped.
        drop(logs);
    }
}
