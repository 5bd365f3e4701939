//! CA certificates as stored on disk or handed in by an operator: reading, parsing, the facts
//! we check, and making new ones.

use std::path::Path;

use mayfly_sdk::TrustDomain;
use rcgen::PublicKeyData;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::profiles::{self, CLOCK_SKEW_ALLOWANCE, Validity};
use super::sha256_hex;
use crate::error::CaError;
use crate::keys::SigningKey;
use mayfly_sdk::files;
use mayfly_sdk::pem;

/// A parsed CA certificate, with the facts rotation checks.
#[derive(Clone, Debug)]
pub(crate) struct StoredCertificate {
    pub(crate) der: Vec<u8>,
    pub(crate) fingerprint_sha256: String,
    pub(crate) validity: Validity,
    pub(crate) subject_public_key_info_der: Vec<u8>,
    pub(crate) uri_names: Vec<String>,
    pub(crate) is_ca: bool,
    /// `basicConstraints` pathLenConstraint, if any.
    pub(crate) path_len: Option<u32>,
    /// Issuer name equals subject name.
    pub(crate) self_issued: bool,
    /// `keyUsage` allows `keyCertSign` (or is absent).
    pub(crate) can_sign_certificates: bool,
}

impl StoredCertificate {
    /// Parses one DER certificate; `Err` is a string saying what is wrong.
    pub(crate) fn parse(der: Vec<u8>) -> Result<Self, String> {
        let (rest, certificate) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err(format!("{} bytes after the certificate", rest.len()));
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
            Err(e) => return Err(e.to_string()),
        };
        let path_len = match certificate.basic_constraints() {
            Ok(Some(constraints)) => constraints.value.path_len_constraint,
            Ok(None) => None,
            Err(e) => return Err(e.to_string()),
        };
        let can_sign_certificates = match certificate.key_usage() {
            Ok(Some(usage)) => usage.value.key_cert_sign(),
            Ok(None) => true,
            Err(e) => return Err(e.to_string()),
        };
        let subject_public_key_info_der = certificate.public_key().raw.to_vec();
        let is_ca = certificate.is_ca();
        let self_issued = certificate.issuer() == certificate.subject();
        drop(certificate);
        Ok(Self {
            fingerprint_sha256: sha256_hex(&der),
            der,
            validity,
            subject_public_key_info_der,
            uri_names,
            is_ca,
            path_len,
            self_issued,
            can_sign_certificates,
        })
    }

    /// Parses a certificate file's DER; errors name the file.
    pub(crate) fn parse_file(path: &Path, der: Vec<u8>) -> Result<Self, CaError> {
        Self::parse(der).map_err(|reason| CaError::InvalidCertificate {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Reads a PEM certificate file.
    pub(crate) fn read(path: &Path) -> Result<Self, CaError> {
        let text = files::read_public_file(path)?;
        let der = pem::decode(pem::CERTIFICATE, &text).map_err(|reason| CaError::InvalidPem {
            path: path.to_path_buf(),
            expected_label: pem::CERTIFICATE,
            reason: reason.to_string(),
        })?;
        Self::parse_file(path, der.to_vec())
    }

    /// Parses a PEM certificate an operator handed in.
    pub(crate) fn from_untrusted_pem(what: &str, pem_text: &[u8]) -> Result<Self, CaError> {
        let der = pem::decode(pem::CERTIFICATE, pem_text)
            .map_err(|reason| CaError::rejected(format!("{what}: {reason}")))?;
        Self::parse(der.to_vec()).map_err(|reason| CaError::rejected(format!("{what}: {reason}")))
    }

    /// Writes the certificate as PEM, atomically, mode `0644`.
    pub(crate) fn write(&self, path: &Path) -> Result<(), CaError> {
        Ok(files::write_public_atomic(
            path,
            pem::encode(pem::CERTIFICATE, &self.der).as_bytes(),
        )?)
    }

    /// Whether it names exactly the trust domain (`spiffe://<td>`) and nothing else.
    pub(crate) fn names_trust_domain(&self, trust_domain: &TrustDomain) -> bool {
        self.uri_names == [trust_domain.id_string()]
    }

    /// The URI SANs, for error messages.
    pub(crate) fn uri_names_text(&self) -> String {
        if self.uri_names.is_empty() {
            "(no URI SAN)".to_string()
        } else {
            self.uri_names.join(", ")
        }
    }

    /// Whether `key` is the private half of the certified key.
    pub(crate) fn is_certified_key(&self, key: &SigningKey) -> bool {
        key.subject_public_key_info_der() == self.subject_public_key_info_der
    }

    /// Whether `self` was signed by `issuer` (names chain and the signature verifies).
    pub(crate) fn is_issued_by(&self, issuer: &Self) -> bool {
        is_issued_by(&self.der, &issuer.der)
    }
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

/// A new self-signed root for `ttl` from `now` (backdated for clock skew).
pub(crate) fn new_root(
    trust_domain: &TrustDomain,
    ttl: std::time::Duration,
    now: i64,
) -> Result<(SigningKey, StoredCertificate), CaError> {
    if ttl.as_secs() == 0 {
        return Err(CaError::InvalidTtl { ttl });
    }
    let key = SigningKey::generate()?;
    let validity = Validity {
        not_before: now - CLOCK_SKEW_ALLOWANCE,
        not_after: profiles::add_seconds(now, ttl),
    };
    let (serial, _) = profiles::random_serial()?;
    let der = profiles::root(trust_domain, validity, serial)?
        .self_signed(&key)
        .map_err(|e| CaError::internal("signing the root certificate", e))?
        .der()
        .to_vec();
    let certificate = StoredCertificate::parse(der)
        .map_err(|reason| CaError::internal("re-reading a new root certificate", reason))?;
    Ok((key, certificate))
}

/// A new intermediate certificate for `public_key`, signed by `root` with `root_key`, for
/// `ttl` from `now` but never beyond the root.
///
/// # Errors
/// [`CaError::RootExpired`] if the root has no lifetime left at `now`.
pub(crate) fn new_intermediate(
    trust_domain: &TrustDomain,
    root: &StoredCertificate,
    root_key: &SigningKey,
    public_key: &impl PublicKeyData,
    ttl: std::time::Duration,
    now: i64,
) -> Result<StoredCertificate, CaError> {
    if ttl.as_secs() == 0 {
        return Err(CaError::InvalidTtl { ttl });
    }
    let root_validity = root.validity;
    let validity = Validity {
        not_before: (now - CLOCK_SKEW_ALLOWANCE).max(root_validity.not_before),
        not_after: profiles::add_seconds(now, ttl).min(root_validity.not_after),
    };
    if validity.not_after <= now {
        return Err(CaError::RootExpired {
            not_after: profiles::system_time(root_validity.not_after),
        });
    }
    let root_issuer =
        rcgen::Issuer::from_ca_cert_der(&CertificateDer::from(root.der.as_slice()), root_key)
            .map_err(|e| CaError::internal("reading the root certificate", e))?;
    let (serial, _) = profiles::random_serial()?;
    let der = profiles::intermediate(trust_domain, validity, serial)?
        .signed_by(public_key, &root_issuer)
        .map_err(|e| CaError::internal("signing the intermediate certificate", e))?
        .der()
        .to_vec();
    StoredCertificate::parse(der)
        .map_err(|reason| CaError::internal("re-reading a new intermediate certificate", reason))
}

/// The first 16 hex digits of an ID, for file names.
pub(crate) fn short_id(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}
