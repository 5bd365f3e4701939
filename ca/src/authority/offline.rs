//! Intermediates signed by a root whose key is not on the server.
//!
//! On the server: [`CertificateAuthority::intermediate_csr`] makes a pending key and a CSR.
//! On the offline machine: [`sign_intermediate_csr`] signs it with the root's key (a root made
//! by [`create_root`]). Back on the server: [`CertificateAuthority::import_intermediate`]
//! checks the certificate and makes it the active intermediate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mayfly_sdk::TrustDomain;
use zeroize::Zeroizing;

use super::CertificateAuthority;
use super::certificate::{self, StoredCertificate};
use super::journal::{AuthorityRecord, Journal};
use super::material::{self, Intermediate};
use super::model::{AuthorityKind, AuthorityState, RotationEvent};
use super::profiles::{self, CLOCK_SKEW_ALLOWANCE, display_time};
use super::root::check_root_certificate;
use super::rotate::demote_active_intermediate;
use crate::csr::parse_and_verify_csr;
use crate::error::CaError;
use crate::failpoint::failpoint;
use crate::keys::SigningKey;
use mayfly_sdk::files;
use mayfly_sdk::pem;

impl CertificateAuthority {
    /// A PEM PKCS#10 CSR for a new intermediate key, kept on this server as `Pending` until
    /// [`import_intermediate`](Self::import_intermediate) brings its certificate. The CSR
    /// names the trust domain (URI SAN) and asks for CA, pathlen 0. Calling it again while a
    /// key is pending returns a new CSR for the same key.
    ///
    /// # Errors
    /// [`CaError::Io`], [`CaError::Crypto`], [`CaError::Internal`].
    pub fn intermediate_csr(&self, now: SystemTime) -> Result<String, CaError> {
        let now = profiles::unix_seconds(now)?;
        let mut rotation = self.lock_rotation();
        if let Some(pending) = rotation
            .journal
            .single(AuthorityKind::Intermediate, AuthorityState::Pending)
        {
            let key = rotation.material.pending.get(&pending.id).ok_or_else(|| {
                CaError::internal("making a CSR", "the pending key is not loaded")
            })?;
            return self.csr_for(key);
        }
        let mut next = rotation.clone();
        let (_, key, _) = next.add_pending_intermediate(&self.dir, now)?;
        failpoint("intermediate.csr.key-written");
        let csr = self.csr_for(&key)?;
        self.commit(&mut rotation, next)?;
        failpoint("intermediate.csr.committed");
        Ok(csr)
    }

    fn csr_for(&self, key: &SigningKey) -> Result<String, CaError> {
        profiles::intermediate_request(&self.trust_domain)?
            .serialize_request(key)
            .and_then(|request| request.pem())
            .map_err(|e| CaError::internal("making a CSR", e))
    }

    /// Installs the certificate signed offline for the pending key as the active
    /// intermediate; the previous one becomes `Old`. If its issuer is the prepared root, that
    /// root becomes active too (the previous root `Old`). A prepared intermediate, never
    /// used, is retired.
    ///
    /// # Errors
    /// - [`CaError::RotationRefused`] if no key is pending (call
    ///   [`intermediate_csr`](Self::intermediate_csr) first);
    /// - [`CaError::CertificateRejected`] unless `cert_pem` is one PEM certificate for the
    ///   pending key, a CA with `pathLenConstraint` 0 naming exactly this trust domain, valid
    ///   now, and signed by a published root (active or prepared);
    /// - [`CaError::Io`].
    ///
    /// A rejected certificate changes nothing.
    pub fn import_intermediate(
        &self,
        cert_pem: &[u8],
        now: SystemTime,
    ) -> Result<Vec<RotationEvent>, CaError> {
        let now = profiles::unix_seconds(now)?;
        let intermediate =
            StoredCertificate::from_untrusted_pem("intermediate certificate", cert_pem)?;
        let mut rotation = self.lock_rotation();
        let journal = &rotation.journal;
        let pending = journal
            .single(AuthorityKind::Intermediate, AuthorityState::Pending)
            .ok_or_else(|| {
                CaError::refused("no intermediate key is pending; call intermediate_csr first")
            })?
            .clone();
        let key = rotation.material.pending.get(&pending.id).ok_or_else(|| {
            CaError::internal("importing an intermediate", "the pending key is not loaded")
        })?;
        self.check_intermediate(&intermediate, key, now)?;
        let issuer = [AuthorityState::Active, AuthorityState::Prepared]
            .into_iter()
            .filter_map(|state| journal.single(AuthorityKind::Root, state))
            .find(|root| {
                rotation
                    .material
                    .roots
                    .get(&root.id)
                    .is_some_and(|material| intermediate.is_issued_by(&material.certificate))
            })
            .ok_or_else(|| {
                CaError::rejected(
                    "the intermediate certificate is not signed by a published root (active or \
                     prepared)",
                )
            })?;
        if issuer
            .not_after
            .is_some_and(|root_end| intermediate.validity.not_after > root_end)
        {
            return Err(CaError::rejected(format!(
                "the intermediate certificate outlives its root (until {}, the root until {})",
                display_time(intermediate.validity.not_after),
                display_time(issuer.not_after.unwrap_or_default())
            )));
        }
        let issuer_id = issuer.id.clone();
        let issuer_was_prepared = issuer.state == AuthorityState::Prepared;
        // A second parsed copy: the pending key stays in the current state until the commit.
        let signing_key = SigningKey::from_pkcs8_der(key.pkcs8_der())?;

        let id = intermediate.fingerprint_sha256.clone();
        let certificate_file = format!("intermediate-{}.crt", certificate::short_id(&id));
        let certificate_path = self.dir.join(&certificate_file);
        intermediate.write(&certificate_path)?;
        failpoint("import.certificate-written");

        let record = AuthorityRecord {
            kind: AuthorityKind::Intermediate,
            id: id.clone(),
            state: AuthorityState::Active,
            certificate: Some(certificate_file),
            key: pending.key.clone(),
            not_before: Some(intermediate.validity.not_before),
            not_after: Some(intermediate.validity.not_after),
            created_at: pending.created_at,
            activated_at: Some(now),
            old_since: None,
            retired_at: None,
            issuer: Some(issuer_id.clone()),
        };
        let mut next = rotation.clone();
        let journal = &rotation.journal;
        let previous_id = journal.active(AuthorityKind::Intermediate)?.id.clone();
        let unused = journal
            .single(AuthorityKind::Intermediate, AuthorityState::Prepared)
            .map(|record| record.id.clone());
        let previous_root = journal.active(AuthorityKind::Root)?.id.clone();

        next.journal
            .authorities
            .retain(|r| !(r.kind == AuthorityKind::Intermediate && r.id == pending.id));
        next.material.pending.remove(&pending.id);
        let mut events = vec![RotationEvent {
            kind: AuthorityKind::Intermediate,
            id: id.clone(),
            from: Some(AuthorityState::Pending),
            to: AuthorityState::Active,
            detail: format!(
                "imported for pending key {}, signed by root {}",
                pending.id,
                certificate::short_id(&issuer_id)
            ),
        }];
        next.journal.authorities.push(record);
        let installed = Intermediate::new(&certificate_path, signing_key, intermediate)?;
        next.material
            .intermediates
            .insert(id.clone(), Arc::new(installed));
        events.push(demote_active_intermediate(
            &mut next,
            &previous_id,
            &id,
            now,
        )?);
        if let Some(unused) = unused {
            events.push(next.journal.transition(
                AuthorityKind::Intermediate,
                &unused,
                AuthorityState::Retired,
                now,
                "never used: superseded by the imported intermediate".to_string(),
            )?);
        }
        if issuer_was_prepared {
            events.push(next.journal.transition(
                AuthorityKind::Root,
                &issuer_id,
                AuthorityState::Active,
                now,
                "activated by importing an intermediate it signed".to_string(),
            )?);
            events.push(next.journal.transition(
                AuthorityKind::Root,
                &previous_root,
                AuthorityState::Old,
                now,
                format!("replaced by root {}", certificate::short_id(&issuer_id)),
            )?);
        }
        let retired = self.commit(&mut rotation, next)?;
        failpoint("import.committed");
        material::delete_files(&retired);
        Ok(events)
    }

    fn check_intermediate(
        &self,
        intermediate: &StoredCertificate,
        pending_key: &SigningKey,
        now: i64,
    ) -> Result<(), CaError> {
        if !intermediate.is_certified_key(pending_key) {
            return Err(CaError::rejected(
                "the intermediate certificate certifies another key than the pending one",
            ));
        }
        if !intermediate.is_ca
            || intermediate.path_len != Some(0)
            || !intermediate.can_sign_certificates
        {
            return Err(CaError::rejected(
                "the intermediate certificate is not a CA with pathLenConstraint 0 allowed to \
                 sign certificates",
            ));
        }
        if !intermediate.names_trust_domain(&self.trust_domain) {
            return Err(CaError::rejected(format!(
                "the intermediate certificate names {}; expected exactly {}",
                intermediate.uri_names_text(),
                self.trust_domain.id_string()
            )));
        }
        let validity = intermediate.validity;
        if validity.not_after <= now || validity.not_before > now + CLOCK_SKEW_ALLOWANCE {
            return Err(CaError::rejected(format!(
                "the intermediate certificate is valid from {} to {}, not now ({})",
                display_time(validity.not_before),
                display_time(validity.not_after),
                display_time(now)
            )));
        }
        Ok(())
    }
}

/// Signs an intermediate CSR with a root certificate and key (PEM), for `ttl` from `now`
/// but never beyond the root. Runs on the offline machine that holds the root key (`mayfly
/// ca sign-intermediate`). Only the CSR's public key is used: the names and constraints come
/// from the intermediate profile (CA, pathlen 0, URI SAN of `trust_domain`).
///
/// # Errors
/// - [`CaError::CertificateRejected`] if the root certificate is not one PEM certificate of
///   a self-signed CA naming exactly `trust_domain`, unexpired, or if the key is not its key,
///   or the CSR is not one PEM `CERTIFICATE REQUEST`;
/// - [`CaError::InvalidKey`] if the key is not a P-256 PKCS#8 PEM key;
/// - the CSR errors of [`parse_and_verify_csr`] ([`CaError::CsrBadSignature`], ...);
/// - [`CaError::InvalidTtl`] for a lifetime under a second.
pub fn sign_intermediate_csr(
    root_cert_pem: &[u8],
    root_key_pem: &[u8],
    csr_pem: &[u8],
    trust_domain: &TrustDomain,
    ttl: Duration,
    now: SystemTime,
) -> Result<String, CaError> {
    let now = profiles::unix_seconds(now)?;
    let root = StoredCertificate::from_untrusted_pem("root certificate", root_cert_pem)?;
    check_root_certificate(&root, trust_domain, now)?;
    let root_key = SigningKey::from_pkcs8_pem(root_key_pem)?;
    if !root.is_certified_key(&root_key) {
        return Err(CaError::rejected(
            "the root key does not belong to the root certificate",
        ));
    }
    let csr_der = pem::decode(pem::CERTIFICATE_REQUEST, csr_pem)
        .map_err(|reason| CaError::rejected(format!("CSR: {reason}")))?;
    let csr = parse_and_verify_csr(&csr_der)?;
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(&csr.subject_public_key_info_der)
        .map_err(|e| CaError::CsrUnsupportedKey {
            algorithm: "SubjectPublicKeyInfo".to_string(),
            reason: e.to_string(),
        })?;
    let intermediate =
        certificate::new_intermediate(trust_domain, &root, &root_key, &public_key, ttl, now)?;
    Ok(pem::encode(pem::CERTIFICATE, &intermediate.der).to_string())
}

/// Makes a new self-signed root for `trust_domain`, valid for `ttl` from `now`, and returns
/// (certificate PEM, PKCS#8 key PEM). For a root kept offline: publish the certificate with
/// [`CertificateAuthority::prepare_root_from_certificate`], keep the key away from the
/// server, and sign intermediates with [`sign_intermediate_csr`].
///
/// # Errors
/// [`CaError::InvalidTtl`] for a lifetime under a second; [`CaError::Crypto`],
/// [`CaError::TimeOutOfRange`].
pub fn create_root(
    trust_domain: &TrustDomain,
    ttl: Duration,
    now: SystemTime,
) -> Result<(String, Zeroizing<String>), CaError> {
    let now = profiles::unix_seconds(now)?;
    let (key, root) = certificate::new_root(trust_domain, ttl, now)?;
    let certificate_pem = pem::encode(pem::CERTIFICATE, &root.der).to_string();
    Ok((
        certificate_pem,
        pem::encode(pem::PRIVATE_KEY, key.pkcs8_der()),
    ))
}

/// Copies the active root of the CA directory `ca_dir` into `out_dir` (created `0700`) as
/// `root.crt` and, when the key is on this server, `root.key` (`0600`): what a new replica's
/// `<data>/ca` needs to share the root (it is adopted on its first start, and the replica
/// makes its own intermediate and JWT key). Returns the files written.
///
/// # Errors
/// [`CaError::JournalInvalid`] when `ca_dir` has no journal; [`CaError::Io`] when a file
/// cannot be read or written (an existing `out_dir/root.key` is never overwritten).
pub fn export_active_root(ca_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, CaError> {
    let journal = Journal::read(ca_dir)?.ok_or_else(|| CaError::JournalInvalid {
        path: Journal::path(ca_dir),
        reason: "no journal: is this a Mayfly CA directory (<data>/ca)?".into(),
    })?;
    let root = journal.active(AuthorityKind::Root)?;
    files::ensure_private_dir(out_dir)?;
    let mut written = Vec::new();
    if let Some(certificate) = &root.certificate {
        let bytes = files::read_public_file(&ca_dir.join(certificate))?;
        let target = out_dir.join(super::ROOT_CERT_FILE);
        files::write_public_atomic(&target, &bytes)?;
        written.push(target);
    }
    if let Some(key) = &root.key {
        let target = out_dir.join(super::ROOT_KEY_FILE);
        if target.exists() {
            return Err(CaError::io(
                "write",
                &target,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a root key is already there",
                ),
            ));
        }
        let bytes = files::read_secret_file(&ca_dir.join(key))?;
        files::write_secret_atomic(&target, &bytes)?;
        written.push(target);
    }
    Ok(written)
}
