//! Loading the CA directory: from its journal, by adopting the earlier journal-less layout,
//! or by creating a new CA in an empty directory.
//!
//! New files are written before the journal that names them, so a crash while creating a CA
//! leaves files no journal names; the next load ignores them and starts again. A crash while
//! adopting the earlier layout leaves that layout untouched (plus, perhaps, a new
//! intermediate nobody names), so the next load adopts it again.

use std::path::{Path, PathBuf};

use super::certificate::{self, StoredCertificate};
use super::journal::Journal;
use super::material::{self, RootMaterial, Rotation};
use super::model::AuthorityState;
use super::profiles;
use super::{
    CaConfig, CertificateAuthority, INTERMEDIATE_CERT_FILE, INTERMEDIATE_KEY_FILE, JWT_KEY_FILE,
    LoadReport, ROOT_CERT_FILE, ROOT_KEY_FILE,
};
use crate::error::CaError;
use crate::keys::SigningKey;
use mayfly_sdk::files;

pub(super) fn load_or_create(
    dir: &Path,
    config: &CaConfig,
    now: std::time::SystemTime,
) -> Result<(CertificateAuthority, LoadReport), CaError> {
    config.check()?;
    let now = profiles::unix_seconds(now)?;
    files::ensure_private_dir(dir)?;
    let mut report = LoadReport::default();

    let (rotation, snapshot) = match Journal::read(dir)? {
        Some(journal) => from_journal(dir, config, journal, now)?,
        None => {
            let rotation = if files::exists(&dir.join(ROOT_KEY_FILE))?
                || files::exists(&dir.join(ROOT_CERT_FILE))?
            {
                adopt_legacy_layout(dir, config, now, &mut report)?
            } else {
                create(dir, config, now, &mut report)?
            };
            let (rotation, snapshot, journal_path) = rotation.commit_first(dir)?;
            report.files.push(journal_path);
            (rotation, snapshot)
        }
    };

    let authority = CertificateAuthority::from_parts(dir, config, rotation, snapshot);
    let repair = authority.replace_expired_intermediate(now)?;
    if !repair.events.is_empty() {
        report.created_intermediate |= !repair.files.is_empty();
        report.files.extend(repair.files);
        report.files.push(Journal::path(dir));
        report.events.extend(repair.events);
    }
    Ok((authority, report))
}

fn from_journal(
    dir: &Path,
    config: &CaConfig,
    journal: Journal,
    now: i64,
) -> Result<(Rotation, super::material::Snapshot), CaError> {
    if journal.trust_domain != config.trust_domain.as_str() {
        return Err(CaError::TrustDomainMismatch {
            configured: config.trust_domain.id_string(),
            found: format!("spiffe://{}", journal.trust_domain),
        });
    }
    // Finish a retirement a crash interrupted: the journal says retired, so the files go.
    material::delete_files(&material::retired_files(dir, &journal, |_| true));
    Rotation::load(dir, journal, &config.trust_domain, now)
}

/// A new root, intermediate and JWT key, all active.
fn create(
    dir: &Path,
    config: &CaConfig,
    now: i64,
    report: &mut LoadReport,
) -> Result<Rotation, CaError> {
    let mut rotation = empty_rotation(config);
    let (key, root) = certificate::new_root(&config.trust_domain, config.root_ttl, now)?;
    let root_id = root.fingerprint_sha256.clone();
    let (event, written) = rotation.add_root(
        dir,
        root,
        Some(key),
        AuthorityState::Active,
        now,
        "new CA".to_string(),
    )?;
    report.created_root = true;
    record(report, event, written);

    add_first_intermediate(dir, config, &root_id, now, &mut rotation, report)?;

    let (event, written) =
        rotation.add_jwt_key(dir, AuthorityState::Active, now, "new CA".to_string())?;
    report.created_jwt_key = true;
    record(report, event, written);
    Ok(rotation)
}

fn add_first_intermediate(
    dir: &Path,
    config: &CaConfig,
    root_id: &str,
    now: i64,
    rotation: &mut Rotation,
    report: &mut LoadReport,
) -> Result<(), CaError> {
    let (event, written) = rotation.add_intermediate(
        dir,
        config,
        root_id,
        AuthorityState::Active,
        now,
        "first intermediate of the root".to_string(),
    )?;
    report.created_intermediate = true;
    record(report, event, written);
    Ok(())
}

fn record(report: &mut LoadReport, event: super::model::RotationEvent, written: Vec<PathBuf>) {
    report.events.push(event);
    report.files.extend(written);
}

fn empty_rotation(config: &CaConfig) -> Rotation {
    Rotation {
        journal: Journal::new(config.trust_domain.as_str()),
        material: material::Material::default(),
    }
}

/// The files of the earlier layout, named as they were.
struct LegacyPaths {
    root_key: PathBuf,
    root_cert: PathBuf,
    intermediate_key: PathBuf,
    intermediate_cert: PathBuf,
    jwt_key: PathBuf,
}

impl LegacyPaths {
    fn new(dir: &Path) -> Self {
        Self {
            root_key: dir.join(ROOT_KEY_FILE),
            root_cert: dir.join(ROOT_CERT_FILE),
            intermediate_key: dir.join(INTERMEDIATE_KEY_FILE),
            intermediate_cert: dir.join(INTERMEDIATE_CERT_FILE),
            jwt_key: dir.join(JWT_KEY_FILE),
        }
    }
}

/// Adopts `root.key`/`root.crt` (both required), the intermediate if it is still usable, and
/// `jwt.key` if present; what is missing or unusable is made new.
fn adopt_legacy_layout(
    dir: &Path,
    config: &CaConfig,
    now: i64,
    report: &mut LoadReport,
) -> Result<Rotation, CaError> {
    let paths = LegacyPaths::new(dir);
    match (
        files::exists(&paths.root_key)?,
        files::exists(&paths.root_cert)?,
    ) {
        (true, false) => {
            return Err(CaError::IncompleteCaState {
                missing: paths.root_cert,
                present: paths.root_key,
            });
        }
        (false, true) => {
            return Err(CaError::IncompleteCaState {
                missing: paths.root_key,
                present: paths.root_cert,
            });
        }
        _ => {}
    }
    let root = load_legacy_root(&paths, config, now)?;
    let root_id = root.certificate.fingerprint_sha256.clone();
    let mut rotation = empty_rotation(config);
    report.adopted_legacy_layout = true;

    match load_legacy_intermediate(&paths, &root, now)? {
        Some((key, certificate)) => {
            rotation.adopt_root(root, &paths.root_cert, &paths.root_key, now);
            rotation.adopt_intermediate(
                key,
                certificate,
                &paths.intermediate_cert,
                &paths.intermediate_key,
                &root_id,
                now,
            )?;
        }
        None => {
            rotation.adopt_root(root, &paths.root_cert, &paths.root_key, now);
            add_first_intermediate(dir, config, &root_id, now, &mut rotation, report)?;
        }
    }

    if files::exists(&paths.jwt_key)? {
        let key = SigningKey::load(&paths.jwt_key)?;
        rotation.adopt_jwt_key(&key, &paths.jwt_key, now)?;
    } else {
        let (event, written) = rotation.add_jwt_key(
            dir,
            AuthorityState::Active,
            now,
            "the earlier layout had no JWT key".to_string(),
        )?;
        report.created_jwt_key = true;
        record(report, event, written);
    }
    Ok(rotation)
}

fn load_legacy_root(
    paths: &LegacyPaths,
    config: &CaConfig,
    now: i64,
) -> Result<RootMaterial, CaError> {
    // The key first: a key file others can read is refused before anything else.
    let key = SigningKey::load(&paths.root_key)?;
    let certificate = StoredCertificate::read(&paths.root_cert)?;
    if !certificate.names_trust_domain(&config.trust_domain) {
        return Err(CaError::TrustDomainMismatch {
            configured: config.trust_domain.id_string(),
            found: certificate.uri_names_text(),
        });
    }
    if !certificate.is_ca {
        return Err(CaError::InvalidCertificate {
            path: paths.root_cert.clone(),
            reason: "not a CA certificate".to_string(),
        });
    }
    if !certificate.is_certified_key(&key) {
        return Err(CaError::KeyCertificateMismatch {
            key: paths.root_key.clone(),
            certificate: paths.root_cert.clone(),
        });
    }
    if certificate.validity.not_after <= now {
        return Err(CaError::RootExpired {
            not_after: profiles::system_time(certificate.validity.not_after),
        });
    }
    Ok(RootMaterial {
        certificate,
        key: Some(key),
    })
}

/// The stored intermediate, or `None` when it must be replaced (missing, not matching its
/// key, or expired). One signed by another root is refused: that is not a state to guess in.
fn load_legacy_intermediate(
    paths: &LegacyPaths,
    root: &RootMaterial,
    now: i64,
) -> Result<Option<(SigningKey, StoredCertificate)>, CaError> {
    if !files::exists(&paths.intermediate_key)? || !files::exists(&paths.intermediate_cert)? {
        return Ok(None);
    }
    let key = SigningKey::load(&paths.intermediate_key)?;
    let certificate = StoredCertificate::read(&paths.intermediate_cert)?;
    if !certificate.is_issued_by(&root.certificate) {
        return Err(CaError::IntermediateNotIssuedByRoot {
            intermediate: paths.intermediate_cert.clone(),
            root: paths.root_cert.clone(),
        });
    }
    if !certificate.is_certified_key(&key) || certificate.validity.not_after <= now {
        return Ok(None);
    }
    Ok(Some((key, certificate)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The states a crash between two steps leaves, made directly; `tests/crash.rs` makes
    //! them with real aborts at the failpoints.

    use std::time::{Duration, UNIX_EPOCH};

    use mayfly_sdk::TrustDomain;

    use super::*;
    use crate::authority::model::AuthorityKind;

    const T0: u64 = 1_748_736_000;

    fn at(seconds: u64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + seconds)
    }

    fn config() -> CaConfig {
        let mut config = CaConfig::new(TrustDomain::new("example.org").unwrap());
        config.intermediate_ttl = Duration::from_secs(10 * 24 * 3600);
        config
    }

    fn load(dir: &Path, now: std::time::SystemTime) -> (CertificateAuthority, LoadReport) {
        load_or_create(dir, &config(), now).unwrap()
    }

    #[test]
    fn files_written_before_a_crash_before_the_commit_are_ignored() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let (ca, _) = load(dir, at(0));
        let before = ca.status(at(60));
        // A crash at `intermediate.prepare.key-written` / `jwt.prepare.key-written` /
        // `root.prepare.key-written`: new files on disk, the journal unchanged.
        let orphans = {
            let rotation = ca.lock_rotation();
            let mut next = rotation.clone();
            let root_id = next.journal.active(AuthorityKind::Root).unwrap().id.clone();
            let (_, mut written) = next
                .add_intermediate(
                    dir,
                    &config(),
                    &root_id,
                    AuthorityState::Prepared,
                    0,
                    String::new(),
                )
                .unwrap();
            written.extend(
                next.add_jwt_key(dir, AuthorityState::Prepared, 0, String::new())
                    .unwrap()
                    .1,
            );
            let (key, root) =
                certificate::new_root(&config().trust_domain, config().root_ttl, 0).unwrap();
            written.extend(
                next.add_root(
                    dir,
                    root,
                    Some(key),
                    AuthorityState::Prepared,
                    0,
                    String::new(),
                )
                .unwrap()
                .1,
            );
            written
        };
        drop(ca);
        assert_eq!(orphans.len(), 5);
        assert!(orphans.iter().all(|path| path.exists()));

        let (ca, report) = load(dir, at(60));
        assert_eq!(report, LoadReport::default());
        assert_eq!(ca.status(at(60)), before);
        assert_eq!(
            ca.bundle(1, Duration::from_secs(1)).x509_authorities.len(),
            1
        );
        // The step runs again from scratch, with new files.
        let events = ca.prepare_root(at(120)).unwrap();
        assert_eq!(events.len(), 1);
        let journal = Journal::read(dir).unwrap().unwrap();
        let named: Vec<&str> = journal
            .authorities
            .iter()
            .flat_map(|record| record.file_names())
            .collect();
        for orphan in &orphans {
            let name = orphan.file_name().unwrap().to_str().unwrap();
            assert!(!named.contains(&name), "{name} is named by the journal");
        }
    }

    #[test]
    fn a_retirement_committed_before_a_crash_finishes_at_load() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let (ca, _) = load(dir, at(0));
        let half = 5 * 24 * 3600;
        ca.rotate_due(at(half)).unwrap();
        ca.rotate_due(at(half + 15 * 60)).unwrap();
        // A crash at `retire.committed`: the journal says retired, the files are still there.
        let leftovers = {
            let mut rotation = ca.lock_rotation();
            let mut next = rotation.clone();
            let old = next
                .journal
                .single(AuthorityKind::Intermediate, AuthorityState::Old)
                .unwrap()
                .id
                .clone();
            next.journal
                .transition(
                    AuthorityKind::Intermediate,
                    &old,
                    AuthorityState::Retired,
                    0,
                    String::new(),
                )
                .unwrap();
            let (_, retired) = rotation.commit(dir, next).unwrap();
            retired
        };
        drop(ca);
        assert_eq!(leftovers.len(), 2);
        assert!(leftovers.iter().all(|path| path.exists()));

        let (ca, report) = load(dir, at(half + 20 * 60));
        assert_eq!(report, LoadReport::default());
        assert!(leftovers.iter().all(|path| !path.exists()));
        let status = ca.status(at(half + 20 * 60));
        assert_eq!(
            status
                .authorities
                .iter()
                .filter(|a| a.state == AuthorityState::Retired)
                .count(),
            1
        );
    }

    #[test]
    fn a_temporary_journal_left_by_a_crash_is_ignored() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let (ca, _) = load(dir, at(0));
        let generation = ca.generation();
        std::fs::write(dir.join(".rotation.json.0123456789abcdef.tmp"), b"{ torn").unwrap();
        let (again, report) = load(dir, at(1));
        assert_eq!(report, LoadReport::default());
        assert_eq!(again.status(at(1)), ca.status(at(1)));
        assert_eq!(again.generation(), generation);
    }

    #[test]
    fn the_generation_survives_a_restart() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let (ca, _) = load(dir, at(0));
        assert_eq!(ca.generation(), 1);
        ca.prepare_root(at(10)).unwrap();
        ca.activate_root(at(10 + 15 * 60), false).unwrap();
        assert_eq!(ca.generation(), 3);
        drop(ca);
        let (again, _) = load(dir, at(10_000));
        assert_eq!(again.generation(), 3);
    }
}
