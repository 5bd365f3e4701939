//! [`X509Source`]: the workload's X509-SVID and bundles, kept current.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::task::{self, TaskGuard};
use super::{WorkloadClient, WorkloadError, X509Bundle, X509Context, X509Svid};
use crate::SpiffeId;
use crate::revocation::{RevocationSet, RevocationWatch};

/// The workload's X509-SVID and trust bundles, kept current by a
/// background task that follows the agent's `FetchX509SVID` stream.
///
/// Readers never wait: [`svid`](Self::svid) and [`bundle`](Self::bundle)
/// load the current snapshot, and the rustls configs of
/// [`server_config`](Self::server_config) and
/// [`client_config`](Self::client_config) read it on every handshake, so a
/// rotation needs no new config. When the agent is unreachable the task
/// reconnects with backoff and jitter while the last SVID stays in use;
/// an update that cannot be used (malformed, or without the SPIFFE ID this
/// source follows) is logged and skipped.
///
/// Revocation is opt-in: after
/// [`with_revocations`](Self::with_revocations), the configs built from the
/// source also refuse peers whose certificate the broker has revoked (by
/// serial, or by SPIFFE ID, entry or agent), and every peer while the
/// revocation set is stale. The check is local and lock-free, like the
/// rest of the handshake.
///
/// Clones share the snapshot and the task. The task stops when the last
/// clone, and the last config built from one, is dropped.
#[derive(Clone)]
pub struct X509Source {
    inner: Arc<Inner>,
    /// What the configs built from this handle check peers against, if
    /// anything.
    revocations: Option<Revocations>,
}

/// A revocation set and the watch that keeps it current.
#[derive(Clone)]
struct Revocations {
    set: Arc<RevocationSet>,
    /// `None` only for a set handed over directly, in tests.
    watch: Option<RevocationWatch>,
}

struct Inner {
    shared: Arc<Shared>,
    task: TaskGuard,
}

/// What the task updates and the readers read.
struct Shared {
    material: ArcSwap<Material>,
    /// Each change's generation; the sender lives in the task, so
    /// receivers learn when it stops.
    updates: watch::Receiver<u64>,
    /// The SPIFFE ID to follow; the first SVID when `None`.
    spiffe_id: Option<SpiffeId>,
}

/// One immutable snapshot.
struct Material {
    generation: u64,
    context: Arc<X509Context>,
    svid: Arc<X509Svid>,
    bundle: Arc<X509Bundle>,
}

impl Material {
    /// The snapshot for `context`, following `spiffe_id`.
    fn new(
        generation: u64,
        context: X509Context,
        spiffe_id: Option<&SpiffeId>,
    ) -> Result<Self, WorkloadError> {
        let svid =
            context
                .svid(spiffe_id)
                .cloned()
                .ok_or_else(|| WorkloadError::NoSuitableSvid {
                    wanted: spiffe_id.cloned(),
                })?;
        let trust_domain = svid.spiffe_id().trust_domain();
        // `X509Context::parse` adds the bundle of every SVID's trust domain.
        let bundle = context.bundle(&trust_domain).cloned().ok_or_else(|| {
            WorkloadError::invalid_response(format!("no bundle for {trust_domain}"))
        })?;
        Ok(Material {
            generation,
            context: Arc::new(context),
            svid,
            bundle,
        })
    }
}

impl fmt::Debug for X509Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let material = self.inner.shared.material.load();
        f.debug_struct("X509Source")
            .field("spiffe_id", material.svid.spiffe_id())
            .field("generation", &material.generation)
            .field("following", &self.inner.task)
            .field(
                "revocations",
                &self.revocations.as_ref().map(|r| r.set.len()),
            )
            .finish()
    }
}

impl X509Source {
    /// Starts following the workload's X509-SVIDs, using the first (the
    /// default) SVID the agent lists.
    ///
    /// Waits for the first SVID, retrying with backoff while the agent is
    /// unreachable or not ready; bound that wait with
    /// `tokio::time::timeout` if needed. Must be called inside a Tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// At once, without retrying: [`WorkloadError::NoIdentityIssued`] when
    /// no entry matches this workload, [`WorkloadError::PermissionDenied`],
    /// [`WorkloadError::InvalidArgument`], and
    /// [`WorkloadError::InvalidResponse`] for an SVID or bundle this crate
    /// cannot use.
    pub async fn new(client: WorkloadClient) -> Result<Self, WorkloadError> {
        Self::start(client, None).await
    }

    /// Starts following the SVID for `spiffe_id`, for a workload that holds
    /// several identities.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new); and [`WorkloadError::NoSuitableSvid`] if the
    /// workload holds no SVID for `spiffe_id`.
    pub async fn for_spiffe_id(
        client: WorkloadClient,
        spiffe_id: SpiffeId,
    ) -> Result<Self, WorkloadError> {
        Self::start(client, Some(spiffe_id)).await
    }

    async fn start(
        client: WorkloadClient,
        spiffe_id: Option<SpiffeId>,
    ) -> Result<Self, WorkloadError> {
        let open = {
            let client = client.clone();
            move || {
                let client = client.clone();
                async move { client.stream_x509_contexts().await }
            }
        };
        let (stream, first) = task::first_update(
            &open,
            |context: &X509Context| match context.svid(spiffe_id.as_ref()) {
                Some(_) => Ok(()),
                None => Err(WorkloadError::NoSuitableSvid {
                    wanted: spiffe_id.clone(),
                }),
            },
            "X509-SVID",
        )
        .await?;
        let material = Material::new(0, first, spiffe_id.as_ref())?;
        tracing::debug!(spiffe_id = %material.svid.spiffe_id(), "X509-SVID source ready");
        let (sender, updates) = watch::channel(0);
        let shared = Arc::new(Shared {
            material: ArcSwap::from_pointee(material),
            updates,
            spiffe_id,
        });
        let task = TaskGuard::spawn({
            let shared = shared.clone();
            move |cancel| async move {
                let apply = move |context| shared.apply(context, &sender);
                task::follow(stream, open, apply, cancel, "X509-SVID").await;
            }
        });
        Ok(X509Source {
            inner: Arc::new(Inner { shared, task }),
            revocations: None,
        })
    }

    /// Also refuses TLS peers that the broker has revoked, as `revocations`
    /// (which follows the broker's revocation stream) knows them, in every
    /// [`server_config`](Self::server_config) and
    /// [`client_config`](Self::client_config) built from the returned
    /// source: once the peer's chain holds, its leaf is checked by serial
    /// number, and by SPIFFE ID against entry, SPIFFE ID and agent
    /// revocations that cover certificates issued (`notBefore`) at or
    /// before them. A refused handshake fails with
    /// `rustls::Error::InvalidCertificate(CertificateError::Other(_))`
    /// wrapping [`WorkloadError::PeerRevoked`].
    ///
    /// Fails closed: while the revocation set has not heard from the broker
    /// for longer than its staleness bound, every peer is refused
    /// ([`RevocationError::Stale`](crate::revocation::RevocationError::Stale)).
    /// The check reads the set at each handshake, without a lock or a call.
    /// The source and its configs keep the watch, and so its background
    /// task, alive; clones made before this call, and configs built from
    /// them, do not check revocation.
    pub fn with_revocations(self, revocations: RevocationWatch) -> Self {
        let set = revocations.set().clone();
        self.checking(set, Some(revocations))
    }

    /// The revocations the configs built from this source check, if any.
    pub fn revocations(&self) -> Option<&RevocationWatch> {
        self.revocations.as_ref()?.watch.as_ref()
    }

    /// The revocation set the configs built from this source check, if any.
    pub(crate) fn revocation_set(&self) -> Option<&Arc<RevocationSet>> {
        self.revocations.as_ref().map(|r| &r.set)
    }

    fn checking(mut self, set: Arc<RevocationSet>, watch: Option<RevocationWatch>) -> Self {
        self.revocations = Some(Revocations { set, watch });
        self
    }

    /// A source that checks `set` directly, with no broker behind it, for
    /// tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn with_revocation_set(self, set: Arc<RevocationSet>) -> Self {
        self.checking(set, None)
    }

    /// A source with a fixed context and no agent, for tests elsewhere in
    /// the crate. Must be called inside a Tokio runtime.
    #[cfg(test)]
    pub(crate) fn with_fixed_context(
        context: X509Context,
        spiffe_id: Option<SpiffeId>,
    ) -> Result<Self, WorkloadError> {
        let material = Material::new(0, context, spiffe_id.as_ref())?;
        let (_, updates) = watch::channel(0);
        let shared = Arc::new(Shared {
            material: ArcSwap::from_pointee(material),
            updates,
            spiffe_id,
        });
        let task = TaskGuard::spawn(|cancel| async move { cancel.cancelled().await });
        Ok(X509Source {
            inner: Arc::new(Inner { shared, task }),
            revocations: None,
        })
    }

    /// The current SVID: the one for the SPIFFE ID this source follows, or
    /// the agent's first.
    pub fn svid(&self) -> Arc<X509Svid> {
        self.inner.shared.material.load().svid.clone()
    }

    /// The current X.509 bundle of the SVID's trust domain.
    pub fn bundle(&self) -> Arc<X509Bundle> {
        self.inner.shared.material.load().bundle.clone()
    }

    /// Everything the agent last sent: all the workload's SVIDs and every
    /// bundle, federated ones included.
    pub fn context(&self) -> Arc<X509Context> {
        self.inner.shared.material.load().context.clone()
    }

    /// A receiver of the snapshot's generation: 0 for the first, one more
    /// on every change (rotation, new bundle). `changed().await` wakes on
    /// the next change; it fails once the source has stopped following the
    /// agent (dropped, or stopped on an error retrying cannot fix).
    pub fn updated(&self) -> watch::Receiver<u64> {
        self.inner.shared.updates.clone()
    }

    /// Whether the background task is still following the agent.
    pub fn is_following(&self) -> bool {
        self.inner.task.is_running()
    }
}

impl Shared {
    /// Publishes `context` if it changes anything; keeps the last good
    /// snapshot if it cannot be used.
    fn apply(&self, context: X509Context, sender: &watch::Sender<u64>) {
        let current = self.material.load();
        if context.same_as(&current.context) {
            return;
        }
        let generation = current.generation + 1;
        match Material::new(generation, context, self.spiffe_id.as_ref()) {
            Ok(material) => {
                tracing::info!(
                    spiffe_id = %material.svid.spiffe_id(),
                    expires_at = material.svid.expires_at(),
                    generation,
                    "new X509-SVID material"
                );
                self.material.store(Arc::new(material));
                sender.send_replace(generation);
            }
            Err(error) => {
                tracing::warn!(%error, "ignoring an X509-SVID update; the last SVID stays in use");
            }
        }
    }
}
