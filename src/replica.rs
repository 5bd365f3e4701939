//! Several replicas on one shared store.
//!
//! Each replica keeps its own intermediate CA and JWT signing key under the
//! shared root. Two background tasks tie the replicas together:
//!
//! - [`follow`] applies the store's change feed ([`StoreEvent`]) to this
//!   replica's in-process indexes (entries and revocations) and records
//!   every heartbeat in the revocation index, which fails closed once it
//!   has not heard from the store for longer than its staleness bound;
//! - [`KeyPublisher`] publishes this replica's public JWT keys to the store
//!   and serves the union of every live replica's keys, so a token minted
//!   by one replica validates on all of them.
//!
//! With the embedded store there is one replica: the store has no change
//! feed and no other replicas, and neither task has anything to do.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use mayfly_ca::CertificateAuthority;
use mayfly_sdk::TrustDomain;
use mayfly_sdk::bundle::{BundleError, JwtAuthority, SpiffeBundle};
use mayfly_sdk::revocation::RevocationSet;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::api::bundle::{BundleFileError, BundlePublisher};
use crate::audience::AudienceIndex;
use crate::clock::Clock;
use crate::mint::UsageTracker;
use crate::policy::{EntryIndex, HARD_TTL_CAP};
use crate::store::{ReplicaRecord, Store, StoreError, StoreEvent};

/// How often a replica republishes its keys and re-reads the others'.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// The file in the data directory that holds this replica's id.
/// The replica id file's name, as [`DataDir::replica_id`](mayfly_sdk::data_dir::DataDir::replica_id) spells it.
#[cfg(test)]
const REPLICA_ID_FILE: &str = "replica-id";

/// This replica's id, the replicas it currently serves keys for, and what
/// it knows of the shared store's connection.
#[derive(Debug)]
pub struct Replicas {
    id: String,
    live: ArcSwap<Vec<String>>,
    /// Notified when another replica published keys.
    changed: Notify,
    /// Whether the shared store's change feed is connected (its last word
    /// was a snapshot or a heartbeat, not a loss).
    store_connected: AtomicBool,
}

impl Replicas {
    /// This replica, alone so far.
    pub fn new(id: String) -> Self {
        let live = ArcSwap::from_pointee(vec![id.clone()]);
        Replicas {
            id,
            live,
            changed: Notify::new(),
            store_connected: AtomicBool::new(false),
        }
    }

    /// Notified when another replica published keys.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Whether the shared store's change feed is connected now (false
    /// before the first snapshot, and with the embedded store).
    pub fn store_connected(&self) -> bool {
        self.store_connected.load(Ordering::Relaxed)
    }

    /// This replica's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The replicas whose keys are served, in id order.
    pub fn live(&self) -> Vec<String> {
        self.live.load().as_ref().clone()
    }
}

/// Reads this replica's id from the data directory, creating a random one
/// on first start.
///
/// # Errors
///
/// [`ReplicaIdError`], naming the file, if it cannot be read or written, or
/// holds something that is not an id.
pub fn load_or_create_id(data_dir: &Path) -> Result<String, ReplicaIdError> {
    let path = mayfly_sdk::data_dir::DataDir::new(data_dir).replica_id();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(id.to_owned())
            } else {
                Err(ReplicaIdError::NotAnId { path })
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 8];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ReplicaIdError::Random)?;
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            mayfly_sdk::files::write_public_atomic(&path, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
        Err(source) => Err(ReplicaIdError::Io { path, source }),
    }
}

/// Applies the store's change feed to the in-process indexes until the feed
/// ends or `cancel` fires. `replicas` is told when another replica
/// published keys, and whether the feed is connected.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    mut events: mpsc::Receiver<StoreEvent>,
    entries: Arc<EntryIndex>,
    audiences: Arc<AudienceIndex>,
    revocations: Arc<RevocationSet>,
    usage: Arc<UsageTracker>,
    replicas: Arc<Replicas>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let mut lost = false;
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            event = events.recv() => event,
        };
        let Some(event) = event else {
            tracing::error!("the store's change feed ended; revocation data will go stale");
            return;
        };
        let now_ms = crate::clock::unix_millis(clock.now());
        apply(&event, &entries, &revocations, &usage, &replicas, now_ms);
        apply_audiences(&event, &audiences);
        match event {
            StoreEvent::Lost { reason } if !lost => {
                lost = true;
                tracing::warn!(%reason, "lost the shared store; serving from local state until the staleness bound");
            }
            StoreEvent::Heard(_) if lost => {
                lost = false;
                tracing::info!("the shared store is back");
            }
            _ => {}
        }
    }
}

/// Applies one event received at `now_ms` (this replica's clock: freshness
/// is judged by the clock that checks it).
pub fn apply(
    event: &StoreEvent,
    entries: &EntryIndex,
    revocations: &RevocationSet,
    usage: &UsageTracker,
    replicas: &Replicas,
    now_ms: i64,
) {
    match event {
        StoreEvent::Snapshot {
            entries: all,
            revocations: revoked,
        } => {
            entries.replace_all(all.iter().cloned());
            revocations.replace_all(revoked.iter().cloned());
            replicas.store_connected.store(true, Ordering::Relaxed);
            replicas.changed.notify_one();
        }
        StoreEvent::EntryUpserted(entry) => entries.upsert(entry.clone()),
        StoreEvent::EntryDeleted(id) => {
            entries.remove(id);
            usage.forget(id);
        }
        StoreEvent::RevocationPut(revocation) => revocations.upsert(revocation.clone()),
        StoreEvent::RevocationDeleted(key) => {
            revocations.remove_key(key);
        }
        StoreEvent::ReplicasChanged => replicas.changed.notify_one(),
        StoreEvent::Heard(_) => {
            revocations.mark_heard(now_ms);
            replicas.store_connected.store(true, Ordering::Relaxed);
        }
        StoreEvent::Lost { .. } => replicas.store_connected.store(false, Ordering::Relaxed),
        // The audience registry: see [`apply_audiences`].
        StoreEvent::AudiencesReplaced(_)
        | StoreEvent::AudienceUpserted(_)
        | StoreEvent::AudienceDeleted(_) => {}
    }
}

/// Applies one event to the audience registry (other events do nothing
/// here), so that every replica enforces the audiences any replica
/// registered.
pub fn apply_audiences(event: &StoreEvent, audiences: &AudienceIndex) {
    match event {
        StoreEvent::AudiencesReplaced(all) => audiences.replace_all(all.iter().cloned()),
        StoreEvent::AudienceUpserted(record) => audiences.upsert(record.clone()),
        StoreEvent::AudienceDeleted(name) => audiences.remove(name),
        _ => {}
    }
}

/// Publishes this replica's JWT keys and serves the union of every live
/// replica's.
#[derive(Debug, Clone)]
pub struct KeyPublisher {
    /// The shared store.
    pub store: Arc<dyn Store>,
    /// This replica's CA (its JWT key).
    pub ca: Arc<CertificateAuthority>,
    /// The served bundle.
    pub bundle: Arc<BundlePublisher>,
    /// Who is live.
    pub replicas: Arc<Replicas>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The JWT validation leeway: keys are kept that much longer.
    pub leeway: Duration,
}

impl KeyPublisher {
    /// Publishes this replica's keys, then serves the union of the live
    /// replicas' keys.
    ///
    /// # Errors
    ///
    /// [`KeyPublishError`] if the store cannot be reached or the bundle
    /// cannot be rendered; the keys served so far stay.
    pub async fn refresh(&self) -> Result<(), KeyPublishError> {
        let now = self.clock.unix_now();
        let keep = i64::try_from((HARD_TTL_CAP + self.leeway + KEY_REFRESH_INTERVAL).as_secs())
            .unwrap_or(i64::MAX);
        let trust_domain = self.ca.trust_domain().clone();
        // Every published key of this replica: prepared, active and old.
        let own = self.ca.bundle(0, Duration::ZERO).jwt_authorities;
        let record = ReplicaRecord {
            replica_id: self.replicas.id.clone(),
            jwks: jwks_json(&trust_domain, &own)?,
            published_at: now,
            keep_until: now.saturating_add(keep),
        };
        self.store.publish_replica(&record).await?;
        let live = self.store.live_replicas(now).await?;
        let mut authorities = Vec::new();
        let mut ids = vec![self.replicas.id.clone()];
        for replica in live.iter().filter(|r| r.replica_id != self.replicas.id) {
            match parse_jwks(&trust_domain, &replica.jwks) {
                Ok(keys) => authorities.extend(keys),
                Err(error) => {
                    tracing::warn!(replica = %replica.replica_id, %error, "ignoring a replica's unusable keys");
                    continue;
                }
            }
            ids.push(replica.replica_id.clone());
        }
        ids.sort();
        self.replicas.live.store(Arc::new(ids));
        if self.bundle.set_peer_jwt_authorities(authorities)? {
            tracing::info!(
                keys = self.bundle.jwt_authorities().len(),
                sequence = self.bundle.current().proto.sequence,
                "JWT keys of the live replicas changed; bundle republished"
            );
        }
        Ok(())
    }

    /// Refreshes every [`KEY_REFRESH_INTERVAL`], whenever another replica
    /// published ([`Replicas::changed`]) and whenever this replica's own
    /// keys change (`ca_changes`: a rotation), until `cancel` fires.
    pub async fn run(
        self,
        mut ca_changes: tokio::sync::watch::Receiver<u64>,
        cancel: CancellationToken,
    ) {
        loop {
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "cannot refresh the replicas' keys; will retry");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.replicas.changed.notified() => {}
                Ok(()) = ca_changes.changed() => {}
                () = tokio::time::sleep(KEY_REFRESH_INTERVAL) => {}
            }
        }
    }
}

fn jwks_json(trust_domain: &TrustDomain, keys: &[JwtAuthority]) -> Result<String, BundleError> {
    let mut bundle = SpiffeBundle::new(trust_domain.clone());
    bundle.jwt_authorities = keys.to_vec();
    bundle.to_json()
}

fn parse_jwks(trust_domain: &TrustDomain, json: &str) -> Result<Vec<JwtAuthority>, BundleError> {
    SpiffeBundle::parse(trust_domain.clone(), json.as_bytes()).map(|bundle| bundle.jwt_authorities)
}

/// Why this replica's id could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaIdError {
    /// The file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A new id cannot be written.
    #[error(transparent)]
    Write(#[from] mayfly_sdk::files::FileError),
    /// The file holds something else.
    #[error("{} does not hold a replica id (16 hex digits)", path.display())]
    NotAnId {
        /// The file.
        path: PathBuf,
    },
    /// No random bytes for a new id.
    #[error("the system random generator failed")]
    Random,
}

/// Why this replica's keys could not be published or its peers' read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyPublishError {
    /// The store cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This replica's keys cannot be rendered.
    #[error("rendering this replica's keys: {0}")]
    Render(#[from] BundleError),
    /// The bundle with the peers' keys cannot be published.
    #[error(transparent)]
    Bundle(#[from] BundleFileError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_id_is_made_once_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create_id(dir.path()).unwrap();
        assert_eq!(id.len(), 16);
        assert_eq!(load_or_create_id(dir.path()).unwrap(), id);
        std::fs::write(dir.path().join(REPLICA_ID_FILE), "not an id").unwrap();
        let error = load_or_create_id(dir.path()).unwrap_err();
        assert!(
            matches!(&error, ReplicaIdError::NotAnId { path } if path.ends_with(REPLICA_ID_FILE)),
            "{error:?}"
        );
    }
}
