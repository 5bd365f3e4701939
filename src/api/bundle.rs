//! The trust bundle as it is served: one immutable snapshot, replaced on
//! every change and pushed to every `WatchBundle` stream.
//!
//! Every change increments `spiffe_sequence`. With several replicas the JWT
//! authorities are the union of every live replica's keys, so a token
//! minted by one replica validates on every other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mayfly_ca::CertificateAuthority;
use mayfly_sdk::bundle::JwtAuthority;
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
    ca: Arc<CertificateAuthority>,
    refresh_hint: Duration,
    /// The current sequence and JWT authorities; held only to build the
    /// next snapshot, never across an await.
    state: Mutex<(u64, Vec<JwtAuthority>)>,
    sender: watch::Sender<Arc<PublishedBundle>>,
}

impl BundlePublisher {
    /// Publishes the CA's current bundle as `sequence`.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        sequence: u64,
        refresh_hint: Duration,
    ) -> Result<Self, String> {
        let authorities = vec![ca.jwt_signer().authority()];
        let published = publish(&ca, sequence, refresh_hint, &authorities)?;
        let (sender, _) = watch::channel(Arc::new(published));
        Ok(BundlePublisher {
            ca,
            refresh_hint,
            state: Mutex::new((sequence, authorities)),
            sender,
        })
    }

    /// The current bundle.
    pub fn current(&self) -> Arc<PublishedBundle> {
        self.sender.borrow().clone()
    }

    /// A receiver that sees every future change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<PublishedBundle>> {
        self.sender.subscribe()
    }

    /// The JWT authorities served now.
    pub fn jwt_authorities(&self) -> Vec<JwtAuthority> {
        self.lock().1.clone()
    }

    /// Serves these JWT authorities (this replica's own is always kept),
    /// sorted by key id. Publishes a new bundle with the next sequence if
    /// the set changed; returns whether it did.
    ///
    /// # Errors
    ///
    /// A message if the bundle cannot be rendered; the old one stays.
    pub fn set_jwt_authorities(&self, mut authorities: Vec<JwtAuthority>) -> Result<bool, String> {
        let own = self.ca.jwt_signer().authority();
        if !authorities.iter().any(|a| a.key_id == own.key_id) {
            authorities.push(own);
        }
        authorities.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        authorities.dedup_by(|a, b| a.key_id == b.key_id);
        let mut state = self.lock();
        let mut current = state.1.clone();
        current.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        if current == authorities {
            return Ok(false);
        }
        let sequence = state.0.saturating_add(1);
        let published = publish(&self.ca, sequence, self.refresh_hint, &authorities)?;
        *state = (sequence, authorities);
        self.sender.send_replace(Arc::new(published));
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Vec<JwtAuthority>)> {
        // Only replaced whole under the lock: a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Renders the CA's bundle, with these JWT authorities, in every served form.
fn publish(
    ca: &CertificateAuthority,
    sequence: u64,
    refresh_hint: Duration,
    jwt_authorities: &[JwtAuthority],
) -> Result<PublishedBundle, String> {
    let mut bundle = ca.bundle(sequence, refresh_hint);
    bundle.jwt_authorities = jwt_authorities.to_vec();
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
