//! The parsed keys and certificates of every live authority, the snapshot issuing reads,
//! and the commit that moves from one state to the next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mayfly_sdk::TrustDomain;
use mayfly_sdk::bundle::JwtAuthority;
use rustls_pki_types::CertificateDer;

use super::certificate::{self, StoredCertificate};
use super::journal::{AuthorityRecord, Journal};
use super::model::{AuthorityKind, AuthorityState, RotationEvent};
use super::profiles;
use super::{CaConfig, sha256_hex};
use crate::error::CaError;
use crate::jwt::JwtSigner;
use crate::keys::SigningKey;
use mayfly_sdk::files;

/// An intermediate that can sign: parsed once, used for every leaf.
pub(crate) struct Intermediate {
    pub(crate) issuer: rcgen::Issuer<'static, SigningKey>,
    pub(crate) der: Vec<u8>,
    pub(crate) fingerprint_sha256: String,
    /// Seconds since the epoch.
    pub(crate) not_before: i64,
    /// Seconds since the epoch.
    pub(crate) not_after: i64,
}

impl Intermediate {
    pub(crate) fn new(
        path: &Path,
        key: SigningKey,
        certificate: StoredCertificate,
    ) -> Result<Self, CaError> {
        // Taking the issuer name and key identifier from the certificate itself keeps every
        // leaf's issuer field byte-identical to the intermediate's subject.
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&CertificateDer::from(certificate.der.as_slice()), key)
                .map_err(|e| CaError::InvalidCertificate {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
        Ok(Self {
            issuer,
            not_before: certificate.validity.not_before,
            not_after: certificate.validity.not_after,
            fingerprint_sha256: certificate.fingerprint_sha256,
            der: certificate.der,
        })
    }
}

/// A root: its certificate, and its key when the key is on this server.
pub(crate) struct RootMaterial {
    pub(crate) certificate: StoredCertificate,
    pub(crate) key: Option<SigningKey>,
}

/// Parsed material of every authority the journal lists as not retired, by ID.
#[derive(Clone, Default)]
pub(crate) struct Material {
    pub(crate) roots: BTreeMap<String, Arc<RootMaterial>>,
    pub(crate) intermediates: BTreeMap<String, Arc<Intermediate>>,
    pub(crate) jwt_keys: BTreeMap<String, Arc<JwtSigner>>,
    pub(crate) pending: BTreeMap<String, Arc<SigningKey>>,
}

impl Material {
    fn retain_live(&mut self, journal: &Journal) {
        let live = |kind: AuthorityKind, id: &str| {
            journal
                .find(kind, id)
                .is_some_and(|record| record.state != AuthorityState::Retired)
        };
        self.roots.retain(|id, _| live(AuthorityKind::Root, id));
        self.intermediates
            .retain(|id, _| live(AuthorityKind::Intermediate, id));
        self.pending
            .retain(|id, _| live(AuthorityKind::Intermediate, id));
        self.jwt_keys
            .retain(|id, _| live(AuthorityKind::JwtKey, id));
    }

    pub(crate) fn root(&self, id: &str) -> Result<&Arc<RootMaterial>, CaError> {
        self.roots
            .get(id)
            .ok_or_else(|| CaError::internal("finding a root", format!("root {id} not loaded")))
    }

    /// Reads and checks the files of every live authority in `journal`.
    ///
    /// # Errors
    /// [`CaError::JournalFileMissing`], [`CaError::JournalFileMismatch`],
    /// [`CaError::KeyCertificateMismatch`], [`CaError::IntermediateNotIssuedByRoot`],
    /// [`CaError::TrustDomainMismatch`], [`CaError::RootExpired`] (active root), and the
    /// errors of reading key and certificate files.
    pub(crate) fn load(
        dir: &Path,
        journal: &Journal,
        trust_domain: &TrustDomain,
        now: i64,
    ) -> Result<Self, CaError> {
        let files = JournalFiles { dir };
        let mut material = Self::default();
        let live = |kind| {
            journal
                .of_kind(kind)
                .filter(|record| record.state != AuthorityState::Retired)
        };
        // Roots first: intermediates are checked against them.
        for record in live(AuthorityKind::Root) {
            let root = files.root(record, trust_domain)?;
            if record.state == AuthorityState::Active && root.certificate.validity.not_after <= now
            {
                return Err(CaError::RootExpired {
                    not_after: profiles::system_time(root.certificate.validity.not_after),
                });
            }
            material.roots.insert(record.id.clone(), Arc::new(root));
        }
        for record in live(AuthorityKind::Intermediate) {
            if record.state == AuthorityState::Pending {
                let key = files.pending_key(record)?;
                material.pending.insert(record.id.clone(), Arc::new(key));
            } else {
                let intermediate = files.intermediate(record, journal, &material)?;
                material
                    .intermediates
                    .insert(record.id.clone(), Arc::new(intermediate));
            }
        }
        for record in live(AuthorityKind::JwtKey) {
            let signer = files.jwt_key(record)?;
            material
                .jwt_keys
                .insert(record.id.clone(), Arc::new(signer));
        }
        Ok(material)
    }
}

/// Reads the files a journal names, with errors that name them.
struct JournalFiles<'a> {
    dir: &'a Path,
}

impl JournalFiles<'_> {
    fn path(&self, name: Option<&String>, record: &AuthorityRecord) -> Result<PathBuf, CaError> {
        let name = name.ok_or_else(|| CaError::JournalInvalid {
            path: Journal::path(self.dir),
            reason: format!("{} {} lacks a file name", record.kind, record.id),
        })?;
        let path = self.dir.join(name);
        if !files::exists(&path)? {
            return Err(CaError::JournalFileMissing {
                path,
                journal: Journal::path(self.dir),
            });
        }
        Ok(path)
    }

    fn certificate(
        &self,
        record: &AuthorityRecord,
    ) -> Result<(PathBuf, StoredCertificate), CaError> {
        let path = self.path(record.certificate.as_ref(), record)?;
        let certificate = StoredCertificate::read(&path)?;
        if certificate.fingerprint_sha256 != record.id {
            return Err(CaError::JournalFileMismatch {
                path,
                reason: format!(
                    "its SHA-256 is {}, the journal expects {}",
                    certificate.fingerprint_sha256, record.id
                ),
            });
        }
        Ok((path, certificate))
    }

    fn key(&self, record: &AuthorityRecord) -> Result<(PathBuf, SigningKey), CaError> {
        let path = self.path(record.key.as_ref(), record)?;
        let key = SigningKey::load(&path)?;
        Ok((path, key))
    }

    fn root(
        &self,
        record: &AuthorityRecord,
        trust_domain: &TrustDomain,
    ) -> Result<RootMaterial, CaError> {
        // The key first: a key file others can read is refused before anything else.
        let key = match &record.key {
            Some(_) => Some(self.key(record)?),
            None => None,
        };
        let (certificate_path, certificate) = self.certificate(record)?;
        if !certificate.names_trust_domain(trust_domain) {
            return Err(CaError::TrustDomainMismatch {
                configured: trust_domain.id_string(),
                found: certificate.uri_names_text(),
            });
        }
        if !certificate.is_ca || !certificate.self_issued {
            return Err(CaError::InvalidCertificate {
                path: certificate_path,
                reason: "not a self-issued CA certificate".to_string(),
            });
        }
        let key = match key {
            Some((key_path, key)) => {
                if !certificate.is_certified_key(&key) {
                    return Err(CaError::KeyCertificateMismatch {
                        key: key_path,
                        certificate: certificate_path,
                    });
                }
                Some(key)
            }
            None => None,
        };
        Ok(RootMaterial { certificate, key })
    }

    fn intermediate(
        &self,
        record: &AuthorityRecord,
        journal: &Journal,
        material: &Material,
    ) -> Result<Intermediate, CaError> {
        let (key_path, key) = self.key(record)?;
        let (certificate_path, certificate) = self.certificate(record)?;
        if !certificate.is_certified_key(&key) {
            return Err(CaError::KeyCertificateMismatch {
                key: key_path,
                certificate: certificate_path,
            });
        }
        // `Journal::check` guarantees the issuer is a live root, loaded above.
        let issuer_id = record.issuer.as_deref().unwrap_or_default();
        let root = material.root(issuer_id)?;
        if !certificate.is_issued_by(&root.certificate) {
            let root_file = journal
                .find(AuthorityKind::Root, issuer_id)
                .and_then(|root| root.certificate.as_deref())
                .unwrap_or_default();
            return Err(CaError::IntermediateNotIssuedByRoot {
                intermediate: certificate_path,
                root: self.dir.join(root_file),
            });
        }
        Intermediate::new(&certificate_path, key, certificate)
    }

    fn pending_key(&self, record: &AuthorityRecord) -> Result<SigningKey, CaError> {
        let (path, key) = self.key(record)?;
        if pending_id(&key) != record.id {
            return Err(CaError::JournalFileMismatch {
                path,
                reason: format!("it is not the key of pending intermediate {}", record.id),
            });
        }
        Ok(key)
    }

    fn jwt_key(&self, record: &AuthorityRecord) -> Result<JwtSigner, CaError> {
        let (path, key) = self.key(record)?;
        let signer = JwtSigner::new(&key)?;
        if signer.key_id() != record.id {
            return Err(CaError::JournalFileMismatch {
                path,
                reason: format!(
                    "its key ID is {}, the journal expects {}",
                    signer.key_id(),
                    record.id
                ),
            });
        }
        Ok(signer)
    }
}

/// The ID of a pending intermediate, which has a key but no certificate yet.
pub(crate) fn pending_id(key: &SigningKey) -> String {
    format!("pending-{}", sha256_hex(&key.subject_public_key_info_der()))
}

/// What issuing and the bundle read: immutable, swapped whole.
pub(crate) struct Snapshot {
    pub(crate) generation: u64,
    pub(crate) active_root: Arc<RootMaterial>,
    /// Active, then prepared, then old.
    pub(crate) published_roots: Vec<Arc<RootMaterial>>,
    pub(crate) intermediate: Arc<Intermediate>,
    pub(crate) jwt_signer: Arc<JwtSigner>,
    /// Active, then prepared, then old.
    pub(crate) published_jwt_authorities: Vec<JwtAuthority>,
}

/// States in the order they are published.
const PUBLISHED_ORDER: [AuthorityState; 3] = [
    AuthorityState::Active,
    AuthorityState::Prepared,
    AuthorityState::Old,
];

impl Snapshot {
    fn build(journal: &Journal, material: &Material) -> Result<Self, CaError> {
        let missing = |kind: AuthorityKind, id: &str| {
            CaError::internal("publishing the CA state", format!("{kind} {id} not loaded"))
        };
        let published = |kind| {
            PUBLISHED_ORDER
                .into_iter()
                .flat_map(move |state| journal.in_state(kind, state))
        };
        let active_root_id = &journal.active(AuthorityKind::Root)?.id;
        let intermediate_id = &journal.active(AuthorityKind::Intermediate)?.id;
        let jwt_id = &journal.active(AuthorityKind::JwtKey)?.id;
        let published_roots = published(AuthorityKind::Root)
            .map(|r| material.root(&r.id).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        let published_jwt_authorities = published(AuthorityKind::JwtKey)
            .map(|r| {
                material
                    .jwt_keys
                    .get(&r.id)
                    .map(|signer| signer.authority())
                    .ok_or_else(|| missing(AuthorityKind::JwtKey, &r.id))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            generation: journal.generation,
            active_root: Arc::clone(material.root(active_root_id)?),
            published_roots,
            intermediate: material
                .intermediates
                .get(intermediate_id)
                .cloned()
                .ok_or_else(|| missing(AuthorityKind::Intermediate, intermediate_id))?,
            jwt_signer: material
                .jwt_keys
                .get(jwt_id)
                .cloned()
                .ok_or_else(|| missing(AuthorityKind::JwtKey, jwt_id))?,
            published_jwt_authorities,
        })
    }
}

/// The journal and the material it names: the whole rotation state.
#[derive(Clone)]
pub(crate) struct Rotation {
    pub(crate) journal: Journal,
    pub(crate) material: Material,
}

impl Rotation {
    /// Reads the state from a journal, checking every file it names.
    pub(crate) fn load(
        dir: &Path,
        journal: Journal,
        trust_domain: &TrustDomain,
        now: i64,
    ) -> Result<(Self, Snapshot), CaError> {
        let material = Material::load(dir, &journal, trust_domain, now)?;
        let snapshot = Snapshot::build(&journal, &material)?;
        Ok((Self { journal, material }, snapshot))
    }

    /// Writes a first journal for a state built in memory (new directory, adopted layout).
    pub(crate) fn commit_first(self, dir: &Path) -> Result<(Self, Snapshot, PathBuf), CaError> {
        self.journal
            .check()
            .map_err(|reason| CaError::internal("checking the rotation journal", reason))?;
        let snapshot = Snapshot::build(&self.journal, &self.material)?;
        let path = self.journal.write(dir)?;
        Ok((self, snapshot, path))
    }

    /// Makes `next` the state: checks it, writes its journal (the commit point), and only
    /// then replaces `self`. Returns the snapshot to publish and the files of authorities
    /// `next` retired, to be deleted by the caller once the commit is behind it.
    pub(crate) fn commit(
        &mut self,
        dir: &Path,
        mut next: Self,
    ) -> Result<(Snapshot, Vec<PathBuf>), CaError> {
        next.journal.prune_retired();
        if next.journal.published_view() != self.journal.published_view() {
            next.journal.generation = self.journal.generation.saturating_add(1);
        }
        next.journal
            .check()
            .map_err(|reason| CaError::internal("checking the rotation journal", reason))?;
        next.material.retain_live(&next.journal);
        let snapshot = Snapshot::build(&next.journal, &next.material)?;
        let retired_files = newly_retired_files(dir, &self.journal, &next.journal);
        next.journal.write(dir)?;
        *self = next;
        Ok((snapshot, retired_files))
    }

    /// Adds a new intermediate signed by root `root_id` (lifetime
    /// [`CaConfig::intermediate_ttl`]), in `state`: key and certificate are written now, the
    /// journal record goes into `self` (committed by the caller).
    pub(crate) fn add_intermediate(
        &mut self,
        dir: &Path,
        config: &CaConfig,
        root_id: &str,
        state: AuthorityState,
        now: i64,
        detail: String,
    ) -> Result<(RotationEvent, Vec<PathBuf>), CaError> {
        let root = Arc::clone(self.material.root(root_id)?);
        let root_key = root.key.as_ref().ok_or_else(|| {
            CaError::refused(format!(
                "the key of root {} is not on this server; sign an intermediate offline \
                 (intermediate_csr, sign_intermediate_csr, import_intermediate)",
                certificate::short_id(root_id)
            ))
        })?;
        let key = SigningKey::generate()?;
        let certificate = certificate::new_intermediate(
            &config.trust_domain,
            &root.certificate,
            root_key,
            &key,
            config.intermediate_ttl,
            now,
        )?;
        let id = certificate.fingerprint_sha256.clone();
        let stem = format!("intermediate-{}", certificate::short_id(&id));
        let key_path = dir.join(format!("{stem}.key"));
        let certificate_path = dir.join(format!("{stem}.crt"));
        key.store(&key_path)?;
        certificate.write(&certificate_path)?;
        let mut record = certificate_record(
            AuthorityKind::Intermediate,
            &certificate,
            &certificate_path,
            state,
            now,
        );
        record.key = file_name(&key_path);
        record.issuer = Some(root_id.to_string());
        let intermediate = Intermediate::new(&certificate_path, key, certificate)?;
        self.material
            .intermediates
            .insert(id, Arc::new(intermediate));
        let event = self.journal.add(record, detail);
        Ok((event, vec![key_path, certificate_path]))
    }

    /// Adds a new JWT signing key in `state`; the key file is written now.
    pub(crate) fn add_jwt_key(
        &mut self,
        dir: &Path,
        state: AuthorityState,
        now: i64,
        detail: String,
    ) -> Result<(RotationEvent, Vec<PathBuf>), CaError> {
        let key = SigningKey::generate()?;
        let signer = JwtSigner::new(&key)?;
        let id = signer.key_id().to_string();
        let key_path = dir.join(format!("jwt-{}.key", certificate::short_id(&id)));
        key.store(&key_path)?;
        let mut record = new_record(AuthorityKind::JwtKey, &id, state, now);
        record.key = file_name(&key_path);
        self.material.jwt_keys.insert(id, Arc::new(signer));
        let event = self.journal.add(record, detail);
        Ok((event, vec![key_path]))
    }

    /// Adds a root in `state`. With `key`, the key file is written too; without, the root's
    /// key stays offline. The certificate file is written now.
    pub(crate) fn add_root(
        &mut self,
        dir: &Path,
        certificate: StoredCertificate,
        key: Option<SigningKey>,
        state: AuthorityState,
        now: i64,
        detail: String,
    ) -> Result<(RotationEvent, Vec<PathBuf>), CaError> {
        let id = certificate.fingerprint_sha256.clone();
        let stem = format!("root-{}", certificate::short_id(&id));
        let mut written = Vec::new();
        let key_path = match &key {
            Some(key) => {
                let path = dir.join(format!("{stem}.key"));
                key.store(&path)?;
                written.push(path.clone());
                Some(path)
            }
            None => None,
        };
        let certificate_path = dir.join(format!("{stem}.crt"));
        certificate.write(&certificate_path)?;
        written.push(certificate_path.clone());
        let mut record = certificate_record(
            AuthorityKind::Root,
            &certificate,
            &certificate_path,
            state,
            now,
        );
        record.key = key_path.as_deref().and_then(file_name);
        self.material
            .roots
            .insert(id, Arc::new(RootMaterial { certificate, key }));
        let event = self.journal.add(record, detail);
        Ok((event, written))
    }

    /// Adopts files already in the directory (the earlier layout) as a record in `state`.
    pub(crate) fn adopt_root(
        &mut self,
        root: RootMaterial,
        certificate_path: &Path,
        key_path: &Path,
        now: i64,
    ) {
        let id = root.certificate.fingerprint_sha256.clone();
        let mut record = certificate_record(
            AuthorityKind::Root,
            &root.certificate,
            certificate_path,
            AuthorityState::Active,
            now,
        );
        record.key = file_name(key_path);
        self.material.roots.insert(id, Arc::new(root));
        self.journal
            .add(record, "adopted from the earlier layout".to_string());
    }

    /// Adopts an existing intermediate (earlier layout) as the active one.
    pub(crate) fn adopt_intermediate(
        &mut self,
        key: SigningKey,
        certificate: StoredCertificate,
        certificate_path: &Path,
        key_path: &Path,
        root_id: &str,
        now: i64,
    ) -> Result<(), CaError> {
        let id = certificate.fingerprint_sha256.clone();
        let mut record = certificate_record(
            AuthorityKind::Intermediate,
            &certificate,
            certificate_path,
            AuthorityState::Active,
            now,
        );
        record.key = file_name(key_path);
        record.issuer = Some(root_id.to_string());
        let intermediate = Intermediate::new(certificate_path, key, certificate)?;
        self.material
            .intermediates
            .insert(id, Arc::new(intermediate));
        self.journal
            .add(record, "adopted from the earlier layout".to_string());
        Ok(())
    }

    /// Adopts an existing JWT key (earlier layout) as the active one.
    pub(crate) fn adopt_jwt_key(
        &mut self,
        key: &SigningKey,
        key_path: &Path,
        now: i64,
    ) -> Result<(), CaError> {
        let signer = JwtSigner::new(key)?;
        let id = signer.key_id().to_string();
        let mut record = new_record(AuthorityKind::JwtKey, &id, AuthorityState::Active, now);
        record.key = file_name(key_path);
        self.material.jwt_keys.insert(id, Arc::new(signer));
        self.journal
            .add(record, "adopted from the earlier layout".to_string());
        Ok(())
    }

    /// Adds a pending intermediate key (its certificate will be signed offline).
    pub(crate) fn add_pending_intermediate(
        &mut self,
        dir: &Path,
        now: i64,
    ) -> Result<(RotationEvent, Arc<SigningKey>, PathBuf), CaError> {
        let key = SigningKey::generate()?;
        let id = pending_id(&key);
        let digest = id.strip_prefix("pending-").unwrap_or(&id);
        let key_path = dir.join(format!(
            "intermediate-pending-{}.key",
            certificate::short_id(digest)
        ));
        key.store(&key_path)?;
        let mut record = new_record(
            AuthorityKind::Intermediate,
            &id,
            AuthorityState::Pending,
            now,
        );
        record.key = file_name(&key_path);
        let key = Arc::new(key);
        self.material.pending.insert(id, Arc::clone(&key));
        let event = self.journal.add(
            record,
            "new intermediate key; its certificate is to be signed offline".to_string(),
        );
        Ok((event, key, key_path))
    }
}

/// A record made at `now` in `state`; the caller fills in files, validity and issuer.
fn new_record(kind: AuthorityKind, id: &str, state: AuthorityState, now: i64) -> AuthorityRecord {
    AuthorityRecord {
        kind,
        id: id.to_string(),
        state,
        certificate: None,
        key: None,
        not_before: None,
        not_after: None,
        created_at: now,
        activated_at: (state == AuthorityState::Active).then_some(now),
        old_since: None,
        retired_at: None,
        issuer: None,
    }
}

/// A certificate record: its file, validity and (for intermediates) issuer.
fn certificate_record(
    kind: AuthorityKind,
    certificate: &StoredCertificate,
    certificate_path: &Path,
    state: AuthorityState,
    now: i64,
) -> AuthorityRecord {
    let mut record = new_record(kind, &certificate.fingerprint_sha256, state, now);
    record.certificate = file_name(certificate_path);
    record.not_before = Some(certificate.validity.not_before);
    record.not_after = Some(certificate.validity.not_after);
    record
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
}

/// Files of records retired in `next` but not in `previous`, except any file a live record
/// still names.
fn newly_retired_files(dir: &Path, previous: &Journal, next: &Journal) -> Vec<PathBuf> {
    let was_retired = |record: &AuthorityRecord| {
        previous
            .find(record.kind, &record.id)
            .is_some_and(|before| before.state == AuthorityState::Retired)
    };
    retired_files(dir, next, |record| !was_retired(record))
}

/// Files of retired records selected by `select` that no live record names.
pub(crate) fn retired_files(
    dir: &Path,
    journal: &Journal,
    select: impl Fn(&AuthorityRecord) -> bool,
) -> Vec<PathBuf> {
    let live_names: Vec<&str> = journal
        .authorities
        .iter()
        .filter(|record| record.state != AuthorityState::Retired)
        .flat_map(AuthorityRecord::file_names)
        .collect();
    journal
        .authorities
        .iter()
        .filter(|record| record.state == AuthorityState::Retired && select(record))
        .flat_map(AuthorityRecord::file_names)
        .filter(|name| !live_names.contains(name))
        .map(|name| dir.join(name))
        .collect()
}

/// Deletes files of retired authorities. Best effort: the journal already says they are
/// retired, and the next load deletes whatever is left.
pub(crate) fn delete_files(paths: &[PathBuf]) {
    for path in paths {
        let _ = files::remove_if_exists(path);
    }
}
