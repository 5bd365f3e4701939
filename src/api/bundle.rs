//! The trust bundle as it is served: one immutable snapshot, replaced on
//! every change and pushed to every `WatchBundle` stream.
//!
//! The bundle holds every published root (prepared, active and old: root
//! rotation) and every published JWT key of this replica (rotation again)
//! and of the other live replicas (several replicas share one trust
//! domain). Every change increments `spiffe_sequence`, which is kept in the
//! data directory so that it keeps increasing across restarts.

use std::path::PathBuf;
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

#[derive(Debug)]
struct State {
    sequence: u64,
    /// The other replicas' JWT keys.
    peers: Vec<JwtAuthority>,
    /// What the current snapshot holds.
    roots: Vec<Vec<u8>>,
    jwt: Vec<JwtAuthority>,
}

/// Publishes bundle snapshots; readers hold a [`watch::Receiver`].
#[derive(Debug)]
pub struct BundlePublisher {
    ca: Arc<CertificateAuthority>,
    refresh_hint: Duration,
    /// Where the sequence and the roots' PEM are kept (`None`: nowhere).
    files: Option<BundleFiles>,
    /// Held only to build the next snapshot, never across an await.
    state: Mutex<State>,
    sender: watch::Sender<Arc<PublishedBundle>>,
}

/// Files the publisher keeps current in the data directory.
#[derive(Debug, Clone)]
pub struct BundleFiles {
    /// The last published `spiffe_sequence`.
    pub sequence: PathBuf,
    /// The published roots, PEM, for clients (`mayfly client …`).
    pub roots_pem: PathBuf,
}

/// Why a bundle could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleFileError {
    /// The sequence file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A bundle file cannot be written.
    #[error(transparent)]
    Write(#[from] mayfly_sdk::files::FileError),
    /// The sequence file holds something else.
    #[error("{} does not hold a bundle sequence number", path.display())]
    NotASequence {
        /// The file.
        path: PathBuf,
    },
    /// The bundle cannot be rendered.
    #[error("rendering the bundle: {0}")]
    Render(#[from] mayfly_sdk::bundle::BundleError),
}

impl BundlePublisher {
    /// Publishes the CA's current bundle, continuing the sequence kept in
    /// `files` (or starting at 1).
    ///
    /// # Errors
    ///
    /// A message if the bundle cannot be rendered or the files written.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        refresh_hint: Duration,
        files: Option<BundleFiles>,
    ) -> Result<Self, BundleFileError> {
        let sequence = match &files {
            Some(files) => read_sequence(&files.sequence)?.saturating_add(1),
            None => 1,
        };
        let bundle = ca.bundle(sequence, refresh_hint);
        let state = State {
            sequence,
            peers: Vec::new(),
            roots: bundle.x509_authorities.clone(),
            jwt: sorted(bundle.jwt_authorities.clone()),
        };
        let published = publish(&ca, sequence, refresh_hint, &state.jwt)?;
        if let Some(files) = &files {
            write_files(files, sequence, &published)?;
        }
        let (sender, _) = watch::channel(Arc::new(published));
        Ok(BundlePublisher {
            ca,
            refresh_hint,
            files,
            state: Mutex::new(state),
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

    /// The JWT authorities served now (this replica's and its peers').
    pub fn jwt_authorities(&self) -> Vec<JwtAuthority> {
        self.lock().jwt.clone()
    }

    /// Serves the other replicas' JWT keys next to this one's; publishes a
    /// new bundle if anything changed. Returns whether it did.
    ///
    /// # Errors
    ///
    /// A message if the bundle cannot be rendered; the old one stays.
    pub fn set_peer_jwt_authorities(
        &self,
        peers: Vec<JwtAuthority>,
    ) -> Result<bool, BundleFileError> {
        let mut state = self.lock();
        state.peers = peers;
        self.refresh_locked(&mut state)
    }

    /// Re-reads the CA's published authorities (after a rotation step) and
    /// publishes a new bundle if anything changed. Returns whether it did.
    ///
    /// # Errors
    ///
    /// A message if the bundle cannot be rendered or its files written;
    /// the old one stays.
    pub fn refresh(&self) -> Result<bool, BundleFileError> {
        let mut state = self.lock();
        self.refresh_locked(&mut state)
    }

    fn refresh_locked(&self, state: &mut State) -> Result<bool, BundleFileError> {
        let own = self.ca.bundle(state.sequence, self.refresh_hint);
        let mut jwt = own.jwt_authorities.clone();
        for peer in &state.peers {
            if !jwt.iter().any(|a| a.key_id == peer.key_id) {
                jwt.push(peer.clone());
            }
        }
        let jwt = sorted(jwt);
        if own.x509_authorities == state.roots && jwt == state.jwt {
            return Ok(false);
        }
        let sequence = state.sequence.saturating_add(1);
        let published = publish(&self.ca, sequence, self.refresh_hint, &jwt)?;
        if let Some(files) = &self.files {
            write_files(files, sequence, &published)?;
        }
        state.sequence = sequence;
        state.roots = own.x509_authorities;
        state.jwt = jwt;
        self.sender.send_replace(Arc::new(published));
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Only replaced whole under the lock: a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn sorted(mut authorities: Vec<JwtAuthority>) -> Vec<JwtAuthority> {
    authorities.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    authorities.dedup_by(|a, b| a.key_id == b.key_id);
    authorities
}

fn read_sequence(path: &std::path::Path) -> Result<u64, BundleFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| BundleFileError::NotASequence {
                path: path.to_owned(),
            }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(BundleFileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_files(
    files: &BundleFiles,
    sequence: u64,
    bundle: &PublishedBundle,
) -> Result<(), BundleFileError> {
    mayfly_sdk::files::write_public_atomic(&files.roots_pem, bundle.roots_pem.as_bytes())?;
    mayfly_sdk::files::write_public_atomic(&files.sequence, format!("{sequence}\n").as_bytes())?;
    Ok(())
}

/// Renders the CA's bundle, with these JWT authorities, in every served form.
fn publish(
    ca: &CertificateAuthority,
    sequence: u64,
    refresh_hint: Duration,
    jwt_authorities: &[JwtAuthority],
) -> Result<PublishedBundle, BundleFileError> {
    let mut bundle = ca.bundle(sequence, refresh_hint);
    bundle.jwt_authorities = jwt_authorities.to_vec();
    let spiffe_json = bundle.to_json()?;
    let jwks_json = bundle.to_jwks_json()?;
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
