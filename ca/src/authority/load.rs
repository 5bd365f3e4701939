//! Loading the CA directory, and creating whatever is missing.
//!
//! Write order is key first, then certificate. A crash between the two leaves, for the root,
//! a key without a certificate, which is refused with a message naming the missing file
//! (guessing could silently replace a trust anchor); for the intermediate, a pair that does
//! not match, which is simply replaced, since an intermediate is disposable.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::profiles::{self, CLOCK_SKEW_ALLOWANCE, Validity};
use super::{
    CaConfig, CertificateAuthority, INTERMEDIATE_CERT_FILE, INTERMEDIATE_KEY_FILE, Intermediate,
    JWT_KEY_FILE, LoadReport, ROOT_CERT_FILE, ROOT_KEY_FILE, Root, sha256_hex,
};
use crate::error::CaError;
use crate::jwt::JwtSigner;
use crate::keys::SigningKey;
use crate::{files, pem};

struct CaPaths {
    root_key: PathBuf,
    root_cert: PathBuf,
    intermediate_key: PathBuf,
    intermediate_cert: PathBuf,
    jwt_key: PathBuf,
}

impl CaPaths {
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

/// A certificate read back from disk (or just made), with the facts we check.
struct StoredCertificate {
    der: Vec<u8>,
    validity: Validity,
    subject_public_key_info_der: Vec<u8>,
    uri_names: Vec<String>,
    is_ca: bool,
}

struct LoadedRoot {
    key: SigningKey,
    certificate: StoredCertificate,
}

pub(super) fn load_or_create(
    dir: &Path,
    config: &CaConfig,
    now: SystemTime,
) -> Result<(CertificateAuthority, LoadReport), CaError> {
    for ttl in [config.root_ttl, config.intermediate_ttl] {
        if ttl.as_secs() == 0 {
            return Err(CaError::InvalidTtl { ttl });
        }
    }
    let now = profiles::unix_seconds(now)?;
    files::ensure_private_dir(dir)?;
    let paths = CaPaths::new(dir);
    let mut report = LoadReport::default();

    let root = load_or_create_root(&paths, config, now, &mut report)?;
    let intermediate = load_or_create_intermediate(&paths, config, &root, now, &mut report)?;
    let jwt_signer = load_or_create_jwt_signer(&paths, &mut report)?;

    let root_der = root.certificate.der;
    let authority = CertificateAuthority {
        trust_domain: config.trust_domain.clone(),
        root: Root {
            fingerprint_sha256: sha256_hex(&root_der),
            der: root_der,
        },
        intermediate,
        jwt_signer,
    };
    Ok((authority, report))
}

fn load_or_create_root(
    paths: &CaPaths,
    config: &CaConfig,
    now: i64,
    report: &mut LoadReport,
) -> Result<LoadedRoot, CaError> {
    match (
        files::exists(&paths.root_key)?,
        files::exists(&paths.root_cert)?,
    ) {
        (false, false) => create_root(paths, config, now, report),
        (true, true) => load_root(paths, config, now),
        (true, false) => Err(CaError::IncompleteCaState {
            missing: paths.root_cert.clone(),
            present: paths.root_key.clone(),
        }),
        (false, true) => Err(CaError::IncompleteCaState {
            missing: paths.root_key.clone(),
            present: paths.root_cert.clone(),
        }),
    }
}

fn load_root(paths: &CaPaths, config: &CaConfig, now: i64) -> Result<LoadedRoot, CaError> {
    // The key first: a key file others can read is refused before anything else.
    let key = SigningKey::load(&paths.root_key)?;
    let certificate = read_certificate(&paths.root_cert)?;
    let configured = config.trust_domain.id_string();
    if certificate.uri_names != [configured.as_str()] {
        return Err(CaError::TrustDomainMismatch {
            configured,
            found: if certificate.uri_names.is_empty() {
                "(no URI SAN)".to_string()
            } else {
                certificate.uri_names.join(", ")
            },
        });
    }
    if !certificate.is_ca {
        return Err(CaError::InvalidCertificate {
            path: paths.root_cert.clone(),
            reason: "not a CA certificate".to_string(),
        });
    }
    if key.subject_public_key_info_der() != certificate.subject_public_key_info_der {
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
    Ok(LoadedRoot { key, certificate })
}

fn create_root(
    paths: &CaPaths,
    config: &CaConfig,
    now: i64,
    report: &mut LoadReport,
) -> Result<LoadedRoot, CaError> {
    let key = SigningKey::generate()?;
    let validity = Validity {
        not_before: now - CLOCK_SKEW_ALLOWANCE,
        not_after: profiles::add_seconds(now, config.root_ttl),
    };
    let (serial, _) = profiles::random_serial()?;
    let certificate = profiles::root(&config.trust_domain, validity, serial)?
        .self_signed(&key)
        .map_err(|e| CaError::internal("signing the root certificate", e))?;
    let der = certificate.der().to_vec();

    key.store(&paths.root_key)?;
    report.files.push(paths.root_key.clone());
    write_certificate(&paths.root_cert, &der)?;
    report.files.push(paths.root_cert.clone());
    report.created_root = true;

    let certificate = parse_certificate(&paths.root_cert, der)?;
    Ok(LoadedRoot { key, certificate })
}

fn load_or_create_intermediate(
    paths: &CaPaths,
    config: &CaConfig,
    root: &LoadedRoot,
    now: i64,
    report: &mut LoadReport,
) -> Result<Intermediate, CaError> {
    // An intermediate left over from before a new root cannot chain to it.
    if !report.created_root
        && let Some(current) = load_intermediate(paths, root, now)?
    {
        return Ok(current);
    }
    create_intermediate(paths, config, root, now, report)
}

/// The stored intermediate, or `None` when it must be replaced.
fn load_intermediate(
    paths: &CaPaths,
    root: &LoadedRoot,
    now: i64,
) -> Result<Option<Intermediate>, CaError> {
    let key_exists = files::exists(&paths.intermediate_key)?;
    let cert_exists = files::exists(&paths.intermediate_cert)?;
    if !key_exists || !cert_exists {
        return Ok(None);
    }
    let key = SigningKey::load(&paths.intermediate_key)?;
    let certificate = read_certificate(&paths.intermediate_cert)?;
    if !is_issued_by(&certificate.der, &root.certificate.der) {
        return Err(CaError::IntermediateNotIssuedByRoot {
            intermediate: paths.intermediate_cert.clone(),
            root: paths.root_cert.clone(),
        });
    }
    if key.subject_public_key_info_der() != certificate.subject_public_key_info_der
        || needs_renewal(certificate.validity, now)
    {
        return Ok(None);
    }
    intermediate_issuer(&paths.intermediate_cert, key, certificate).map(Some)
}

/// Less than a quarter of the lifetime left (or already expired).
fn needs_renewal(validity: Validity, now: i64) -> bool {
    let lifetime = i128::from(validity.not_after) - i128::from(validity.not_before);
    let remaining = i128::from(validity.not_after) - i128::from(now);
    remaining * 4 < lifetime
}

fn create_intermediate(
    paths: &CaPaths,
    config: &CaConfig,
    root: &LoadedRoot,
    now: i64,
    report: &mut LoadReport,
) -> Result<Intermediate, CaError> {
    let root_validity = root.certificate.validity;
    let validity = Validity {
        not_before: (now - CLOCK_SKEW_ALLOWANCE).max(root_validity.not_before),
        not_after: profiles::add_seconds(now, config.intermediate_ttl).min(root_validity.not_after),
    };
    if validity.not_after <= now {
        return Err(CaError::RootExpired {
            not_after: profiles::system_time(root_validity.not_after),
        });
    }
    let key = SigningKey::generate()?;
    let root_issuer = rcgen::Issuer::from_ca_cert_der(
        &CertificateDer::from(root.certificate.der.as_slice()),
        &root.key,
    )
    .map_err(|e| CaError::internal("reading the root certificate", e))?;
    let (serial, _) = profiles::random_serial()?;
    let der = profiles::intermediate(&config.trust_domain, validity, serial)?
        .signed_by(&key, &root_issuer)
        .map_err(|e| CaError::internal("signing the intermediate certificate", e))?
        .der()
        .to_vec();

    key.store(&paths.intermediate_key)?;
    report.files.push(paths.intermediate_key.clone());
    write_certificate(&paths.intermediate_cert, &der)?;
    report.files.push(paths.intermediate_cert.clone());
    report.created_intermediate = true;

    let certificate = parse_certificate(&paths.intermediate_cert, der)?;
    intermediate_issuer(&paths.intermediate_cert, key, certificate)
}

fn intermediate_issuer(
    path: &Path,
    key: SigningKey,
    certificate: StoredCertificate,
) -> Result<Intermediate, CaError> {
    // Taking the issuer name and key identifier from the certificate itself keeps every
    // leaf's issuer field byte-identical to the intermediate's subject.
    let issuer =
        rcgen::Issuer::from_ca_cert_der(&CertificateDer::from(certificate.der.as_slice()), key)
            .map_err(|e| CaError::InvalidCertificate {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
    Ok(Intermediate {
        issuer,
        not_before: certificate.validity.not_before,
        not_after: certificate.validity.not_after,
        der: certificate.der,
    })
}

fn load_or_create_jwt_signer(
    paths: &CaPaths,
    report: &mut LoadReport,
) -> Result<JwtSigner, CaError> {
    let key = if files::exists(&paths.jwt_key)? {
        SigningKey::load(&paths.jwt_key)?
    } else {
        let key = SigningKey::generate()?;
        key.store(&paths.jwt_key)?;
        report.files.push(paths.jwt_key.clone());
        report.created_jwt_key = true;
        key
    };
    JwtSigner::new(&key)
}

fn write_certificate(path: &Path, der: &[u8]) -> Result<(), CaError> {
    files::write_public_atomic(path, pem::encode(pem::CERTIFICATE, der).as_bytes())
}

fn read_certificate(path: &Path) -> Result<StoredCertificate, CaError> {
    let text = files::read_public_file(path)?;
    let der = pem::decode(pem::CERTIFICATE, &text).map_err(|reason| CaError::InvalidPem {
        path: path.to_path_buf(),
        expected_label: pem::CERTIFICATE,
        reason,
    })?;
    parse_certificate(path, der.to_vec())
}

fn parse_certificate(path: &Path, der: Vec<u8>) -> Result<StoredCertificate, CaError> {
    let invalid = |reason: String| CaError::InvalidCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let (rest, certificate) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| invalid(e.to_string()))?;
    if !rest.is_empty() {
        return Err(invalid(format!(
            "{} bytes after the certificate",
            rest.len()
        )));
    }
    let validity = Validity {
        not_before: certificate.validity().not_before.timestamp(),
        not_after: certificate.validity().not_after.timestamp(),
    };
    let uri_names = match certificate.subject_alternative_name() {
        Ok(Some(extension)) => extension
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some((*uri).to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(invalid(e.to_string())),
    };
    let subject_public_key_info_der = certificate.public_key().raw.to_vec();
    let is_ca = certificate.is_ca();
    Ok(StoredCertificate {
        der,
        validity,
        subject_public_key_info_der,
        uri_names,
        is_ca,
    })
}

fn is_issued_by(child_der: &[u8], parent_der: &[u8]) -> bool {
    let (Ok((_, child)), Ok((_, parent))) = (
        x509_parser::parse_x509_certificate(child_der),
        x509_parser::parse_x509_certificate(parent_der),
    ) else {
        return false;
    };
    child.issuer() == parent.subject() && child.verify_signature(Some(parent.public_key())).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_a_quarter_of_the_lifetime() {
        let validity = Validity {
            not_before: 0,
            not_after: 400,
        };
        assert!(!needs_renewal(validity, 0));
        assert!(!needs_renewal(validity, 300));
        assert!(needs_renewal(validity, 301));
        assert!(needs_renewal(validity, 500));
    }
}
