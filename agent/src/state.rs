//! The state the sync loop writes and the Workload API reads: the current
//! [`Snapshot`], a generation counter that wakes open streams, the JWT-SVID
//! cache and the health report.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::error::AgentError;
use super::jwt_cache::JwtCache;
use super::snapshot::Snapshot;

/// Bumped on every published change; open streams recompute their answer
/// when it moves. `closing` ends them when the agent shuts down, so a
/// graceful shutdown does not wait for streams that never end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Generation {
    pub(crate) number: u64,
    pub(crate) closing: bool,
}

/// How the agent is doing, for operators and health probes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentHealth {
    /// When the last successful sync with the broker finished (agent clock).
    pub last_sync: Option<SystemTime>,
    /// Why the last sync failed; `None` once a sync succeeds again.
    pub last_error: Option<String>,
    /// Failed syncs in a row.
    pub consecutive_failures: u32,
    /// Entries registered under the agent, as of the last successful sync.
    pub entries: usize,
    /// Workload X509-SVIDs the agent holds now.
    pub x509_svids: usize,
    /// JWT-SVIDs cached for reuse, as of the last sync.
    pub jwt_svids: usize,
    /// When the agent's own X509-SVID expires, Unix seconds.
    pub agent_svid_expires_at: i64,
}

impl AgentHealth {
    /// Whether the last sync succeeded.
    pub fn is_healthy(&self) -> bool {
        self.last_error.is_none() && self.last_sync.is_some()
    }
}

/// Shared between the sync loop (the only writer of snapshots) and the
/// Workload API service.
#[derive(Debug)]
pub(crate) struct AgentState {
    snapshot: ArcSwap<Snapshot>,
    changes: watch::Sender<Generation>,
    health: ArcSwap<AgentHealth>,
    pub(crate) jwt: JwtCache,
    fatal: CancellationToken,
    fatal_error: ArcSwapOption<AgentError>,
}

impl AgentState {
    pub(crate) fn new() -> Self {
        AgentState {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            changes: watch::Sender::new(Generation::default()),
            health: ArcSwap::from_pointee(AgentHealth::default()),
            jwt: JwtCache::default(),
            fatal: CancellationToken::new(),
            fatal_error: ArcSwapOption::empty(),
        }
    }

    /// The current snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Makes `next` current and wakes every open stream.
    pub(crate) fn publish(&self, next: Snapshot) {
        self.snapshot.store(Arc::new(next));
        self.changes
            .send_modify(|generation| generation.number += 1);
    }

    /// A receiver that sees every later publication.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Generation> {
        self.changes.subscribe()
    }

    /// Ends every open stream (shutdown).
    pub(crate) fn close(&self) {
        self.changes
            .send_modify(|generation| generation.closing = true);
    }

    /// The current health report.
    pub(crate) fn health(&self) -> AgentHealth {
        (*self.health.load_full()).clone()
    }

    /// Replaces the health report with `update` applied to a copy.
    pub(crate) fn update_health(&self, update: impl FnOnce(&mut AgentHealth)) {
        // One writer (the sync loop), so read-modify-write cannot race.
        let mut health = self.health();
        update(&mut health);
        self.health.store(Arc::new(health));
    }

    /// Records that the agent cannot go on, and says so to whoever waits.
    pub(crate) fn fail(&self, error: AgentError) {
        self.fatal_error.store(Some(Arc::new(error)));
        self.fatal.cancel();
    }

    /// Resolves with the error once [`fail`](Self::fail) was called.
    pub(crate) async fn failed(&self) -> AgentError {
        self.fatal.cancelled().await;
        match self.fatal_error.load_full() {
            Some(error) => (*error).clone(),
            // `fail` stores the error before cancelling.
            None => AgentError::Config {
                reason: "the agent stopped".to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_wakes_subscribers_and_closing_ends_them() {
        let state = AgentState::new();
        let mut receiver = state.subscribe();
        assert!(!receiver.has_changed().unwrap());
        state.publish(Snapshot::default());
        assert!(receiver.has_changed().unwrap());
        assert_eq!(receiver.borrow_and_update().number, 1);
        state.close();
        assert!(receiver.borrow_and_update().closing);
    }

    #[tokio::test]
    async fn failure_is_reported_to_waiters() {
        let state = AgentState::new();
        state.fail(AgentError::IdentityExpired {
            expired_at: "then".into(),
        });
        assert!(matches!(
            state.failed().await,
            AgentError::IdentityExpired { .. }
        ));
    }
}
