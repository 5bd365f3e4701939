//! The trust bundle as it is served: one immutable snapshot, replaced on
//! every change and pushed to every `WatchBundle` stream.

use std::sync::Arc;
use std::time::Duration;

use mayfly_ca::CertificateAuthority;
use mayfly_sdk::proto::v1 as pb;
use tokio::sync::watch;

/// One version of the bundle in every form the broker serves it.
#[derive(Debug, Clone)]
pub struct PublishedBundle {
    /// For gRPC.
    pub proto: pb::Bundle,
    /// The SPIFFE bundle document (JWKS with SPIFFE extensions).
    pub spiffe_json: String,
    /// A plain JWKS of the JWT keys, for OIDC relying parties.
    pub jwks_json: String,
    /// The X.509 authorities as PEM.
    pub roots_pem: String,
}

/// Publishes bundle snapshots; readers hold a [`watch::Receiver`].
#[derive(Debug)]
pub struct BundlePublisher {
    sender: watch::Sender<Arc<PublishedBundle>>,
}

impl BundlePublisher {
    /// Publishes the CA's current bundle as `sequence`.
    pub fn new(
        ca: &CertificateAuthority,
        sequence: u64,
        refresh_hint: Duration,
    ) -> Result<Self, String> {
        let published = publish(ca, sequence, refresh_hint)?;
        let (sender, _) = watch::channel(Arc::new(published));
        Ok(BundlePublisher { sender })
    }

    /// The current bundle.
    pub fn current(&self) -> Arc<PublishedBundle> {
        self.sender.borrow().clone()
    }

    /// A receiver that sees every future change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<PublishedBundle>> {
        self.sender.subscribe()
    }

    /// Replaces the bundle and wakes every watcher.
    pub fn publish(&self, bundle: PublishedBundle) {
        self.sender.send_replace(Arc::new(bundle));
    }
}

/// Renders the CA's bundle in every served form.
pub fn publish(
    ca: &CertificateAuthority,
    sequence: u64,
    refresh_hint: Duration,
) -> Result<PublishedBundle, String> {
    let bundle = ca.bundle(sequence, refresh_hint);
    let spiffe_json = bundle.to_json().map_err(|e| e.to_string())?;
    let jwks_json = bundle.to_jwks_json().map_err(|e| e.to_string())?;
    let roots_pem = bundle.x509_authorities_pem();
    let proto = pb::Bundle {
        trust_domain: bundle.trust_domain.as_str().to_owned(),
        x509_authorities: bundle.x509_authorities.clone(),
        spiffe_bundle_json: spiffe_json.clone().into_bytes(),
        sequence,
        refresh_hint_seconds: u32::try_from(refresh_hint.as_secs()).unwrap_or(u32::MAX),
    };
    Ok(PublishedBundle {
        proto,
        spiffe_json,
        jwks_json,
        roots_pem,
    })
}
