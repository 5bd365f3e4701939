//! The certificate authority: roots, intermediates that sign every leaf, and JWT signing
//! keys, all kept in one directory and rotated there.
//!
//! ```text
//! <dir>/rotation.json                    0600   the journal: every authority, its state, its files
//! <dir>/root-<id16>.key, .crt            0600 / 0644   a root (the key may be kept offline)
//! <dir>/intermediate-<id16>.key, .crt    0600 / 0644   an intermediate, signed by a root
//! <dir>/intermediate-pending-<h16>.key   0600   a key waiting for an offline-signed certificate
//! <dir>/jwt-<kid16>.key                  0600   a JWT signing key
//! ```
//!
//! A directory of an earlier version (`root.key`, `root.crt`, `intermediate.key`,
//! `intermediate.crt`, `jwt.key`, no journal) is adopted as it is on first load.
//!
//! Every authority goes through the same life (see [`AuthorityState`]): `Prepared`
//! (published, not signing), `Active` (signing), `Old` (not signing, still published while
//! something it signed may be valid), `Retired` (out of the bundle, key deleted). Intermediates
//! and JWT keys move along by themselves in [`CertificateAuthority::rotate_due`]; roots move
//! when an operator says so ([`CertificateAuthority::prepare_root`],
//! [`CertificateAuthority::activate_root`], [`CertificateAuthority::retire_root`]).
//!
//! Every step writes new files first, then the journal (one atomic rename: the commit
//! point), then deletes the files of what it retired. A crash before the commit leaves files
//! the journal does not name, which are ignored; after it, files it no longer needs, which the
//! next load deletes.
//!
//! Issuing reads the active signers from an immutable snapshot behind an `ArcSwap`: no lock,
//! no disk. Rotation steps are serialised by a mutex around the journal and swap in a new
//! snapshot only after the journal is on disk, so a failed step keeps the last good one.

mod certificate;
mod crl;
mod issue;
mod journal;
mod load;
mod material;
mod model;
mod offline;
mod profiles;
mod root;
mod rotate;
mod status;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use mayfly_sdk::TrustDomain;
use mayfly_sdk::bundle::SpiffeBundle;

use crate::error::CaError;
use crate::jwt::JwtSigner;
use mayfly_sdk::pem;

pub use crl::{MAX_SERIAL_HEX_LEN, RevokedSerial};
pub use issue::{IssuedX509Svid, ServerCertificate, X509SvidRequest};
pub use journal::JOURNAL_FILE;
pub use model::{AuthorityKind, AuthorityState, AuthorityStatus, CaStatus, RotationEvent};
pub use offline::{create_root, export_active_root, sign_intermediate_csr};

use material::{Rotation, Snapshot};

/// File name of the root key in a directory of the earlier, journal-less layout.
pub const ROOT_KEY_FILE: &str = "root.key";
/// File name of the root certificate in the earlier layout.
pub const ROOT_CERT_FILE: &str = "root.crt";
/// File name of the intermediate key in the earlier layout.
pub const INTERMEDIATE_KEY_FILE: &str = "intermediate.key";
/// File name of the intermediate certificate in the earlier layout.
pub const INTERMEDIATE_CERT_FILE: &str = "intermediate.crt";
/// File name of the JWT signing key in the earlier layout.
pub const JWT_KEY_FILE: &str = "jwt.key";

/// Default root lifetime: ten years.
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Default intermediate lifetime: one year.
pub const DEFAULT_INTERMEDIATE_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Default JWT key lifetime: thirty days.
pub const DEFAULT_JWT_KEY_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Default time a new intermediate or JWT key is published before it signs: fifteen minutes.
pub const DEFAULT_PUBLISH_AHEAD: Duration = Duration::from_secs(15 * 60);
/// Default longest X.509 leaf lifetime: one hour.
pub const DEFAULT_MAX_X509_TTL: Duration = Duration::from_secs(60 * 60);
/// Default longest JWT-SVID lifetime, plus the validators' clock leeway: one hour and 30 s.
pub const DEFAULT_MAX_JWT_TTL: Duration = Duration::from_secs(60 * 60 + 30);

/// How the CA makes and rotates its authorities.
#[derive(Clone, Debug)]
pub struct CaConfig {
    /// The trust domain every certificate names.
    pub trust_domain: TrustDomain,
    /// Lifetime of a newly created root.
    pub root_ttl: Duration,
    /// Lifetime of a newly created intermediate (never beyond its root's). A successor is
    /// prepared once the active intermediate has passed half of its life.
    pub intermediate_ttl: Duration,
    /// How long a JWT key signs: a successor is prepared once the active key has been active
    /// for half of this, and takes over [`publish_ahead`](Self::publish_ahead) later.
    pub jwt_key_ttl: Duration,
    /// How long a prepared intermediate or JWT key is published before it is activated, so
    /// relying parties have fetched it before anything it signs reaches them.
    pub publish_ahead: Duration,
    /// The longest lifetime of any X.509 leaf the caller issues (SVIDs and server
    /// certificates). An old intermediate is retired, and an old root may be retired,
    /// this long after it stopped signing. Issuing longer leaves defeats that bound.
    pub max_x509_ttl: Duration,
    /// The longest lifetime of any JWT-SVID the caller signs, plus validators' clock leeway.
    /// An old JWT key leaves the bundle this long after it stopped signing.
    pub max_jwt_ttl: Duration,
}

impl CaConfig {
    /// A configuration with the default lifetimes ([`DEFAULT_ROOT_TTL`],
    /// [`DEFAULT_INTERMEDIATE_TTL`], [`DEFAULT_JWT_KEY_TTL`], [`DEFAULT_PUBLISH_AHEAD`],
    /// [`DEFAULT_MAX_X509_TTL`], [`DEFAULT_MAX_JWT_TTL`]).
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            root_ttl: DEFAULT_ROOT_TTL,
            intermediate_ttl: DEFAULT_INTERMEDIATE_TTL,
            jwt_key_ttl: DEFAULT_JWT_KEY_TTL,
            publish_ahead: DEFAULT_PUBLISH_AHEAD,
            max_x509_ttl: DEFAULT_MAX_X509_TTL,
            max_jwt_ttl: DEFAULT_MAX_JWT_TTL,
        }
    }

    /// Lifetimes that must be at least a second.
    fn check(&self) -> Result<(), CaError> {
        for ttl in [self.root_ttl, self.intermediate_ttl, self.jwt_key_ttl] {
            if ttl.as_secs() == 0 {
                return Err(CaError::InvalidTtl { ttl });
            }
        }
        Ok(())
    }
}

/// What [`CertificateAuthority::load_or_create`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// A new root key and certificate were created (first start).
    pub created_root: bool,
    /// A new intermediate was created: none existed, the stored one had expired or was
    /// unusable (earlier layout only), or it belonged to a new root.
    pub created_intermediate: bool,
    /// A new JWT signing key was created.
    pub created_jwt_key: bool,
    /// A directory of the earlier, journal-less layout was adopted (its files are kept and
    /// named by the new journal).
    pub adopted_legacy_layout: bool,
    /// Every file written, in the order written (the journal last).
    pub files: Vec<PathBuf>,
    /// State changes made while loading (an expired intermediate replaced, ...), persisted.
    pub events: Vec<RotationEvent>,
}

/// The loaded CA. `Send + Sync`; share it behind an `Arc`.
///
/// `Debug` shows the trust domain, generation and fingerprints, never key material.
pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    dir: PathBuf,
    config: CaConfig,
    /// What issuing and the bundle read, lock-free.
    current: ArcSwap<Snapshot>,
    /// The journal and every live authority's parsed material; rotation steps hold this
    /// lock from start to commit.
    rotation: Mutex<Rotation>,
}

impl CertificateAuthority {
    /// Loads the CA in `dir` (e.g. `<data>/ca`), creating it if the directory is new.
    ///
    /// `dir` is created with mode `0700` if needed. With a journal, the journal is the truth:
    /// every file it names must be present and match. Without one, the earlier layout
    /// (`root.crt`, `root.key`, ...) is adopted as it is (its intermediate replaced if it is
    /// missing, does not match its key or has expired), or, in an empty directory, a new root,
    /// intermediate and JWT key are made. An active intermediate that has expired is replaced
    /// at once when the active root's key is on the server. Files the journal names as
    /// retired are deleted. Rotation as time passes is [`rotate_due`](Self::rotate_due)'s job.
    ///
    /// # Errors
    /// - [`CaError::TrustDomainMismatch`] if `dir` holds a CA for another trust domain;
    /// - [`CaError::KeyFileTooOpen`] for a key file with `mode & 0o077 != 0`;
    /// - [`CaError::IncompleteCaState`] if only one of `root.key` and `root.crt` exists in a
    ///   directory without a journal;
    /// - [`CaError::JournalInvalid`], [`CaError::JournalFileMissing`],
    ///   [`CaError::JournalFileMismatch`] for a damaged journal or a file it names;
    /// - [`CaError::KeyCertificateMismatch`], [`CaError::IntermediateNotIssuedByRoot`],
    ///   [`CaError::InvalidCertificate`], [`CaError::InvalidPem`], [`CaError::InvalidKey`]
    ///   for damaged state;
    /// - [`CaError::RootExpired`] if the active root has expired;
    /// - [`CaError::InvalidTtl`] for a lifetime under a second;
    /// - [`CaError::Io`] and [`CaError::Crypto`].
    pub fn load_or_create(
        dir: &Path,
        config: &CaConfig,
        now: SystemTime,
    ) -> Result<(Self, LoadReport), CaError> {
        load::load_or_create(dir, config, now)
    }

    fn from_parts(dir: &Path, config: &CaConfig, rotation: Rotation, snapshot: Snapshot) -> Self {
        Self {
            trust_domain: config.trust_domain.clone(),
            dir: dir.to_path_buf(),
            config: config.clone(),
            current: ArcSwap::from_pointee(snapshot),
            rotation: Mutex::new(rotation),
        }
    }

    /// The trust domain this CA certifies.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The active root certificate, DER.
    pub fn root_certificate_der(&self) -> Vec<u8> {
        self.current.load().active_root.certificate.der.clone()
    }

    /// Every published root certificate (active first, then prepared, then old), as
    /// concatenated PEM: what clients should trust (`bundle.pem`).
    pub fn root_certificate_pem(&self) -> String {
        let snapshot = self.current.load();
        snapshot
            .published_roots
            .iter()
            .map(|root| pem::encode(pem::CERTIFICATE, &root.certificate.der).to_string())
            .collect()
    }

    /// SHA-256 of the active root certificate's DER, lowercase hex without colons.
    pub fn root_fingerprint_sha256(&self) -> String {
        self.current
            .load()
            .active_root
            .certificate
            .fingerprint_sha256
            .clone()
    }

    /// The active intermediate certificate, DER (the second element of every issued chain).
    pub fn intermediate_certificate_der(&self) -> Vec<u8> {
        self.current.load().intermediate.der.clone()
    }

    /// When the active intermediate expires; no leaf outlives it.
    pub fn intermediate_not_after(&self) -> SystemTime {
        profiles::system_time(self.current.load().intermediate.not_after)
    }

    /// The active JWT-SVID signer (a cheap `Arc` clone; it stays usable after a rotation).
    pub fn jwt_signer(&self) -> Arc<JwtSigner> {
        Arc::clone(&self.current.load().jwt_signer)
    }

    /// The SPIFFE bundle: x509 authorities = every published root (active, prepared, old);
    /// jwt authorities = every published JWT key (active, prepared, old).
    pub fn bundle(&self, sequence: u64, refresh_hint: Duration) -> SpiffeBundle {
        let snapshot = self.current.load();
        SpiffeBundle {
            trust_domain: self.trust_domain.clone(),
            sequence,
            refresh_hint: Some(refresh_hint),
            x509_authorities: snapshot
                .published_roots
                .iter()
                .map(|root| root.certificate.der.clone())
                .collect(),
            jwt_authorities: snapshot.published_jwt_authorities.clone(),
        }
    }

    /// A counter that grows with every change to what [`bundle`](Self::bundle) returns or to
    /// the active signers. Kept in the journal, so it does not go backwards across restarts.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// The configuration this CA was loaded with.
    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// The rotation state, recovering from a poisoned lock: every step changes the state only
    /// by assigning a fully built value after its commit, so a panic cannot leave it torn.
    fn lock_rotation(&self) -> MutexGuard<'_, Rotation> {
        self.rotation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Commits `next` (journal first) and publishes it; returns the files to delete.
    fn commit(&self, current: &mut Rotation, next: Rotation) -> Result<Vec<PathBuf>, CaError> {
        let (snapshot, retired_files) = current.commit(&self.dir, next)?;
        self.current.store(Arc::new(snapshot));
        Ok(retired_files)
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.current.load();
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain.as_str())
            .field("dir", &self.dir)
            .field("generation", &snapshot.generation)
            .field(
                "root_fingerprint_sha256",
                &snapshot.active_root.certificate.fingerprint_sha256,
            )
            .field("published_roots", &snapshot.published_roots.len())
            .field(
                "intermediate_fingerprint_sha256",
                &snapshot.intermediate.fingerprint_sha256,
            )
            .field(
                "intermediate_not_after",
                &profiles::system_time(snapshot.intermediate.not_after),
            )
            .field("jwt_key_id", &snapshot.jwt_signer.key_id())
            .field("private_keys", &"[redacted]")
            .finish()
    }
}

pub(crate) use mayfly_sdk::digest::sha256_hex;
