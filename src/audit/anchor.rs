//! How an anchor outside the host fares: the file the checkpoint thread writes
//! (`[audit] anchor_file`), and the sinks of [`crate::anchor`] (an HTTP witness, syslog).
//!
//! Each anchor has one [`AnchorHealth`]: the tries that failed since the last one that
//! worked, and the first one's error. An outage is logged once, when it starts; `mayfly
//! status` shows it while it lasts ([`AnchorStatus`]); when the anchor works again, the log
//! gets one `audit.anchor.recovered` record ([`Outage::event`]) naming the sink, how many
//! tries failed and the first error. Nothing here blocks an append: an anchor that is away
//! never stops issuance.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::record::AuditEvent;
use super::seal::AUDIT_ACTOR;

/// The action of the record that says an anchor works again.
pub const ANCHOR_RECOVERED_ACTION: &str = "audit.anchor.recovered";

/// How one anchor fares, shared by whoever writes it and whoever reports on it.
#[derive(Debug)]
pub struct AnchorHealth {
    /// `file`, `http` or `syslog`.
    sink: &'static str,
    /// Where it writes (a path, a URL, a syslog address); never holds a secret.
    target: String,
    /// Set when the anchor works again after failures, until the outage is taken.
    recovered: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Failed tries since the last one that worked.
    failures: u64,
    /// The first failure's error.
    first_error: Option<String>,
    /// The outage that just ended, for the recovery record.
    outage: Option<Outage>,
}

/// An outage of an anchor that has ended: what the recovery record tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// `file`, `http` or `syslog`.
    pub sink: &'static str,
    /// Where the anchor writes.
    pub target: String,
    /// How many tries failed.
    pub failures: u64,
    /// The first failure's error.
    pub first_error: String,
}

impl Outage {
    /// The `audit.anchor.recovered` record (actor `mayfly-audit`): the first error as its
    /// reason; the sink, its target and the failed tries in its detail.
    pub fn event(&self) -> AuditEvent {
        AuditEvent {
            action: ANCHOR_RECOVERED_ACTION.into(),
            actor: AUDIT_ACTOR.into(),
            reason: Some(self.first_error.clone()),
            detail: Some(serde_json::json!({
                "sink": self.sink,
                "target": self.target,
                "failed_writes": self.failures,
            })),
            ..AuditEvent::default()
        }
    }
}

/// One anchor as `mayfly status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorStatus {
    /// `file`, `http` or `syslog`.
    pub sink: String,
    /// Where it writes.
    pub target: String,
    /// Failed tries since the last one that worked; 0 while it works.
    pub failures: u64,
    /// The first of those failures' error.
    pub first_error: String,
}

impl fmt::Display for AnchorStatus {
    /// `<target>: ok`, or `<target>: FAILING since <n> tries (first error: <error>)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures == 0 {
            write!(f, "{}: ok", self.target)
        } else {
            write!(
                f,
                "{}: FAILING since {} tries (first error: {})",
                self.target, self.failures, self.first_error
            )
        }
    }
}

impl AnchorHealth {
    /// A healthy anchor of kind `sink` writing to `target`.
    pub fn new(sink: &'static str, target: impl Into<String>) -> Self {
        AnchorHealth {
            sink,
            target: target.into(),
            recovered: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    /// `file`, `http` or `syslog`.
    pub fn sink(&self) -> &'static str {
        self.sink
    }

    /// Where the anchor writes.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Records one try: `Ok`, or the error of a failed one. The first failure of an outage
    /// is logged (a warning: the broker goes on); a success after failures ends the outage,
    /// which [`take_recovery`](Self::take_recovery) then hands out once.
    pub fn record(&self, result: Result<(), String>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) if state.failures > 0 => {
                let first_error = state.first_error.take().unwrap_or_default();
                state.outage = Some(Outage {
                    sink: self.sink,
                    target: self.target.clone(),
                    failures: state.failures,
                    first_error,
                });
                state.failures = 0;
                self.recovered.store(true, Ordering::Release);
            }
            Ok(()) => {}
            Err(error) => {
                if state.failures == 0 {
                    tracing::warn!(sink = self.sink, target = %self.target, %error,
                        "audit checkpoint not anchored; issuance goes on, the anchor lags");
                }
                state.failures += 1;
                state.first_error.get_or_insert(error);
            }
        }
    }

    /// Records a failed try whose error the caller has logged already, in words of its
    /// own (the HTTP anchor that cannot be read at start): counted like any other failure,
    /// without the generic warning.
    pub fn record_logged_failure(&self, error: String) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.failures += 1;
        state.first_error.get_or_insert(error);
    }

    /// Failed tries since the last one that worked, and the first one's error; `None`
    /// while the anchor works.
    pub fn failing(&self) -> Option<(u64, String)> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (state.failures > 0).then(|| {
            (
                state.failures,
                state.first_error.clone().unwrap_or_default(),
            )
        })
    }

    /// The outage that just ended, once.
    pub fn take_recovery(&self) -> Option<Outage> {
        if !self.recovered.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .outage
            .take()
    }

    /// How it fares now, for `mayfly status`.
    pub fn status(&self) -> AnchorStatus {
        let (failures, first_error) = self.failing().unwrap_or_default();
        AnchorStatus {
            sink: self.sink.to_owned(),
            target: self.target.clone(),
            failures,
            first_error,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn an_outage_is_counted_from_its_first_error_and_handed_out_once_when_it_ends() {
        let health = AnchorHealth::new("http", "https://witness.example/a");
        // Positive control: tries that work make no outage.
        health.record(Ok(()));
        health.record(Ok(()));
        assert_eq!(health.failing(), None);
        assert_eq!(health.take_recovery(), None);
        assert_eq!(health.status().to_string(), "https://witness.example/a: ok");

        health.record(Err("status 500".into()));
        health.record(Err("connect: refused".into()));
        health.record(Err("status 502".into()));
        assert_eq!(health.failing(), Some((3, "status 500".into())));
        assert_eq!(health.take_recovery(), None, "not over yet");
        assert_eq!(
            health.status().to_string(),
            "https://witness.example/a: FAILING since 3 tries (first error: status 500)"
        );

        health.record(Ok(()));
        assert_eq!(health.failing(), None);
        let outage = health.take_recovery().unwrap();
        assert_eq!(
            outage,
            Outage {
                sink: "http",
                target: "https://witness.example/a".into(),
                failures: 3,
                first_error: "status 500".into(),
            }
        );
        assert_eq!(health.take_recovery(), None, "once");
        let event = outage.event();
        assert_eq!(event.action, ANCHOR_RECOVERED_ACTION);
        assert_eq!(event.actor, AUDIT_ACTOR);
        assert_eq!(event.reason.as_deref(), Some("status 500"));
        let detail = event.detail.unwrap();
        assert_eq!(detail["sink"], "http");
        assert_eq!(detail["failed_writes"], 3);
    }
}
