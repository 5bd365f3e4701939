//! The sync loop: every few seconds, renew the agent's own SVID when due,
//! list the entries registered under the agent, mint the workload
//! X509-SVIDs that are missing or past half their life, drop those of
//! entries that disappeared, and publish the result.
//!
//! A held SVID that a revocation covers (its serial, or its identity) is
//! dropped at once and minted again; the revocation watch wakes the loop
//! when one arrives. For a revoked identity the broker refuses, so the SVID
//! is withdrawn.
//!
//! When the broker cannot be reached the last snapshot keeps being served,
//! minus whatever expires or is known to be revoked; the loop retries with
//! exponential backoff and jitter and says so in the log and in
//! [`AgentHealth`](super::AgentHealth).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::backoff::Backoff;
use mayfly_sdk::proto::v1 as pb;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::error::AgentError;
use super::identity::{leaf_facts, refresh_point};
use super::revocations::Revocations;
use super::snapshot::{RegisteredEntry, Snapshot, TrustBundle, WorkloadSvid};
use super::state::AgentState;
use super::upstream::Upstream;
use mayfly_sdk::clock::Clock;

/// The broker takes at most this many items per batch call.
const MAX_BATCH: usize = 256;
/// The longest wait between attempts while the broker fails.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long an entry the broker refused to mint for is left alone (unless
/// the entry changes): retrying at once cannot fix a refusal.
const REFUSED_ENTRY_RETRY: Duration = Duration::from_secs(60);

/// Owns the sync state that only the loop touches.
#[derive(Debug)]
pub(crate) struct Syncer {
    upstream: Arc<Upstream>,
    state: Arc<AgentState>,
    revocations: Arc<Revocations>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    /// Entries the broker refused to mint for: (revision, retry after).
    refused: HashMap<String, (u64, i64)>,
}

impl Syncer {
    pub(crate) fn new(
        upstream: Arc<Upstream>,
        state: Arc<AgentState>,
        revocations: Arc<Revocations>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Self {
        Syncer {
            upstream,
            state,
            revocations,
            clock,
            interval,
            refused: HashMap::new(),
        }
    }

    /// Runs until `cancel` fires, or until the agent's own SVID expired
    /// (then the state is marked failed). `wake` starts the next round at
    /// once (the broker pushed a new bundle).
    pub(crate) async fn run(mut self, wake: Arc<tokio::sync::Notify>, cancel: CancellationToken) {
        loop {
            let delay = match self.sync_once().await {
                Ok(()) => self.interval,
                Err(error @ AgentError::IdentityExpired { .. }) => {
                    tracing::error!(%error, "the agent cannot sync any more");
                    self.state.fail(error);
                    return;
                }
                Err(error) => {
                    let failures = self.state.health().consecutive_failures;
                    let delay = if error.is_transient() {
                        Backoff::after_failures(self.interval, MAX_BACKOFF, failures)
                    } else {
                        mayfly_sdk::backoff::jittered(MAX_BACKOFF)
                    };
                    tracing::warn!(
                        %error,
                        failures,
                        retry_in = ?delay,
                        "sync with the broker failed; serving what is still valid"
                    );
                    delay
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
                () = wake.notified() => {}
            }
        }
    }

    /// One round; records the outcome in the health report.
    pub(crate) async fn sync_once(&mut self) -> Result<(), AgentError> {
        if self.revocations.take_identities_changed() {
            // A revocation added or lifted may change what the broker says.
            self.refused.clear();
        }
        let result = self.sync_with_broker().await;
        // Whatever happened, nothing expired or revoked stays on offer.
        self.drop_unservable();
        let snapshot = self.state.snapshot();
        let now = self.clock.now();
        let agent_expires_at = self.upstream.identity().expires_at;
        let jwt_svids = self.state.jwt.len();
        self.state.update_health(|health| {
            health.x509_svids = snapshot.x509.len();
            health.jwt_svids = jwt_svids;
            health.agent_svid_expires_at = agent_expires_at;
            match &result {
                Ok(()) => {
                    health.last_sync = Some(now);
                    health.last_error = None;
                    health.consecutive_failures = 0;
                    health.entries = snapshot.entries.len();
                }
                Err(error) => {
                    health.last_error = Some(error.to_string());
                    health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                }
            }
        });
        result
    }

    async fn sync_with_broker(&mut self) -> Result<(), AgentError> {
        self.upstream.renew_if_due().await?;
        let listing = self.upstream.list_entries().await?;
        let now = self.clock.unix_now();
        let previous = self.state.snapshot();

        let entries: Vec<Arc<RegisteredEntry>> = listing
            .entries
            .iter()
            .filter_map(|wire| match RegisteredEntry::from_proto(wire) {
                Ok(entry) => Some(Arc::new(entry)),
                Err(reason) => {
                    tracing::warn!(entry_id = %wire.entry_id, %reason, "ignoring an entry");
                    None
                }
            })
            .collect();
        let bundle = self.next_bundle(listing.bundle.as_ref(), &previous);

        let mut x509 = HashMap::new();
        let mut due = Vec::new();
        for entry in &entries {
            if !entry.x509 || entry.selectors.is_empty() || !entry.is_live(now) {
                continue;
            }
            if let Some(held) = previous.x509.get(&entry.id)
                && held.spiffe_id == entry.spiffe_id
                && self.servable(held, now)
            {
                // Kept until its replacement arrives.
                x509.insert(entry.id.clone(), held.clone());
                if held.revision == entry.revision && now < held.refresh_at {
                    continue;
                }
            }
            if self.recently_refused(entry, now) {
                continue;
            }
            due.push(entry.clone());
        }
        let minted = self.mint_x509(&due, &mut x509).await;

        let live: HashMap<_, _> = entries
            .iter()
            .map(|e| (e.spiffe_id.clone(), e.revision))
            .collect();
        self.state.jwt.retain(&live, now);
        self.refused
            .retain(|id, _| entries.iter().any(|entry| &entry.id == id));
        let next = Snapshot {
            entries,
            bundle,
            x509,
        };
        if differs(&previous, &next) {
            self.state.publish(next);
        }
        minted
    }

    /// The broker's bundle, parsed, or the previous one if it is missing,
    /// unchanged (keeping the same value, so nothing looks changed) or bad.
    fn next_bundle(
        &self,
        wire: Option<&pb::Bundle>,
        previous: &Snapshot,
    ) -> Option<Arc<TrustBundle>> {
        let Some(wire) = wire else {
            return previous.bundle.clone();
        };
        match TrustBundle::from_proto(wire) {
            Ok(bundle) => {
                self.upstream.note_bundle_roots(&bundle.roots_der);
                match &previous.bundle {
                    Some(old) if old.same_content(&bundle) => Some(old.clone()),
                    _ => {
                        tracing::info!(sequence = bundle.sequence, "trust bundle updated");
                        Some(Arc::new(bundle))
                    }
                }
            }
            Err(reason) => {
                tracing::warn!(%reason, "ignoring a bad trust bundle from the broker");
                previous.bundle.clone()
            }
        }
    }

    fn recently_refused(&self, entry: &RegisteredEntry, now: i64) -> bool {
        matches!(
            self.refused.get(&entry.id),
            Some((revision, retry_at)) if *revision == entry.revision && now < *retry_at
        )
    }

    /// Mints X509-SVIDs for `due` in batches, with keys made here; adds
    /// each success to `x509`. Items the broker refuses are logged and left
    /// alone for a while; a failed call stops the round with its error.
    async fn mint_x509(
        &mut self,
        due: &[Arc<RegisteredEntry>],
        x509: &mut HashMap<String, Arc<WorkloadSvid>>,
    ) -> Result<(), AgentError> {
        for batch in due.chunks(MAX_BATCH) {
            let mut keys = HashMap::with_capacity(batch.len());
            let mut params = Vec::with_capacity(batch.len());
            for entry in batch {
                let (key, csr) = mayfly_sdk::client::new_key_and_csr()?;
                keys.insert(entry.id.clone(), (entry.clone(), key));
                params.push(pb::X509SvidParams {
                    entry_id: entry.id.clone(),
                    csr,
                });
            }
            let response = self.upstream.mint_x509(params).await?;
            let now = self.clock.unix_now();
            for result in response.results {
                let Some((entry, key)) = keys.remove(&result.entry_id) else {
                    tracing::warn!(entry_id = %result.entry_id, "the broker answered for an entry we did not ask for");
                    continue;
                };
                match (result.svid, result.error) {
                    (Some(svid), _) => match workload_svid(&entry, &svid, &key, now) {
                        Ok(held) => {
                            tracing::info!(
                                spiffe_id = %held.spiffe_id,
                                serial = %held.serial,
                                expires_at = %mayfly_sdk::clock::rfc3339(held.expires_at),
                                "workload X509-SVID minted"
                            );
                            self.refused.remove(&entry.id);
                            x509.insert(entry.id.clone(), Arc::new(held));
                        }
                        Err(reason) => {
                            tracing::warn!(entry_id = %entry.id, %reason, "refusing a workload X509-SVID");
                        }
                    },
                    (None, error) => {
                        let (code, message) = error
                            .map(|e| (tonic::Code::from_i32(e.code), e.message))
                            .unwrap_or((tonic::Code::Unknown, "no SVID and no error".to_owned()));
                        tracing::warn!(
                            entry_id = %entry.id,
                            spiffe_id = %entry.spiffe_id,
                            ?code,
                            %message,
                            "the broker did not mint a workload X509-SVID"
                        );
                        let retry_at = now.saturating_add(secs(REFUSED_ENTRY_RETRY));
                        self.refused
                            .insert(entry.id.clone(), (entry.revision, retry_at));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a held SVID may still be served: unexpired, and covered by
    /// no revocation the agent knows of.
    fn servable(&self, svid: &WorkloadSvid, now: i64) -> bool {
        if now >= svid.expires_at {
            return false;
        }
        match self.revocations.known_x509_revocation(svid, now) {
            None => true,
            Some(error) => {
                tracing::info!(
                    spiffe_id = %svid.spiffe_id,
                    serial = %svid.serial,
                    %error,
                    "a workload X509-SVID was revoked; replacing it"
                );
                false
            }
        }
    }

    /// Removes workload SVIDs that expired or were revoked; publishes if
    /// any were.
    fn drop_unservable(&self) {
        let now = self.clock.unix_now();
        let current = self.state.snapshot();
        let servable = |svid: &WorkloadSvid| {
            now < svid.expires_at && self.revocations.known_x509_revocation(svid, now).is_none()
        };
        if current.x509.values().all(|svid| servable(svid)) {
            return;
        }
        let x509 = current
            .x509
            .iter()
            .filter(|(_, svid)| servable(svid))
            .map(|(id, svid)| (id.clone(), svid.clone()))
            .collect();
        tracing::warn!(
            "dropping workload X509-SVIDs that expired or were revoked and could not be replaced"
        );
        self.state.publish(Snapshot {
            entries: current.entries.clone(),
            bundle: current.bundle.clone(),
            x509,
        });
    }
}

/// Checks a minted SVID against the entry and the key, and keeps it.
fn workload_svid(
    entry: &RegisteredEntry,
    svid: &pb::X509Svid,
    key: &rcgen::KeyPair,
    now: i64,
) -> Result<WorkloadSvid, String> {
    let leaf = svid.cert_chain.first().ok_or("no certificate")?;
    let facts = leaf_facts(leaf)?;
    if facts.spiffe_id != entry.spiffe_id {
        return Err(format!(
            "the certificate names {}, the entry {}",
            facts.spiffe_id, entry.spiffe_id
        ));
    }
    if !mayfly_sdk::client::certifies_key(leaf, key).map_err(|e| e.to_string())? {
        return Err("the certificate is not for the key we sent".to_owned());
    }
    Ok(WorkloadSvid {
        entry_id: entry.id.clone(),
        spiffe_id: facts.spiffe_id,
        revision: entry.revision,
        chain_der: svid.cert_chain.concat(),
        key_pkcs8: Zeroizing::new(key.serialize_der()),
        serial: facts.serial,
        not_before: facts.not_before,
        expires_at: facts.not_after,
        refresh_at: refresh_point(now.max(facts.not_before), facts.not_after),
    })
}

/// Whether publishing `next` would change what any caller sees.
fn differs(previous: &Snapshot, next: &Snapshot) -> bool {
    previous.entries != next.entries
        || !previous.same_bundle(next)
        || previous.x509.len() != next.x509.len()
        || next.x509.iter().any(|(id, svid)| {
            previous
                .x509
                .get(id)
                .is_none_or(|old| !Arc::ptr_eq(old, svid))
        })
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_snapshot_is_not_republished() {
        let a = Snapshot::default();
        let b = Snapshot::default();
        assert!(!differs(&a, &b));
    }
}
