//! Root rotation, driven by an operator: prepare (the new root joins the bundle), activate
//! (new intermediates chain to it), retire (the old root leaves the bundle once nothing it
//! signed is valid).

use std::time::SystemTime;

use super::CertificateAuthority;
use super::certificate::{self, StoredCertificate};
use super::material::{self, Rotation};
use super::model::{AuthorityKind, AuthorityState, RotationEvent};
use super::profiles::{self, CLOCK_SKEW_ALLOWANCE, add_seconds, display_time};
use super::rotate::demote_active_intermediate;
use super::status::intermediate_live_until;
use crate::error::CaError;
use crate::failpoint::failpoint;

impl CertificateAuthority {
    /// Makes a new root (key on this server) and publishes it as `Prepared`: it is in
    /// [`bundle`](Self::bundle) and [`root_certificate_pem`](Self::root_certificate_pem) from
    /// now on, and signs nothing until [`activate_root`](Self::activate_root).
    ///
    /// # Errors
    /// [`CaError::RotationRefused`] if a root is already prepared; [`CaError::Io`],
    /// [`CaError::Crypto`].
    pub fn prepare_root(&self, now: SystemTime) -> Result<Vec<RotationEvent>, CaError> {
        let now = profiles::unix_seconds(now)?;
        let mut rotation = self.lock_rotation();
        refuse_if_root_prepared(&rotation)?;
        let (key, root) = certificate::new_root(&self.trust_domain, self.config.root_ttl, now)?;
        let mut next = rotation.clone();
        let (event, _) = next.add_root(
            &self.dir,
            root,
            Some(key),
            AuthorityState::Prepared,
            now,
            "prepared by the operator; published in the bundle".to_string(),
        )?;
        failpoint("root.prepare.key-written");
        self.commit(&mut rotation, next)?;
        failpoint("root.prepare.committed");
        Ok(vec![event])
    }

    /// Publishes a root whose key is kept elsewhere (see [`create_root`](super::create_root))
    /// as `Prepared`. It becomes active when an intermediate it signed is imported
    /// ([`import_intermediate`](Self::import_intermediate)).
    ///
    /// # Errors
    /// [`CaError::CertificateRejected`] unless `cert_pem` is one PEM certificate that is a
    /// self-signed CA naming exactly this trust domain, not expired, not limited to
    /// `pathLenConstraint` 0, and not already known; [`CaError::RotationRefused`] if a root is
    /// already prepared; [`CaError::Io`].
    pub fn prepare_root_from_certificate(
        &self,
        cert_pem: &[u8],
        now: SystemTime,
    ) -> Result<Vec<RotationEvent>, CaError> {
        let now = profiles::unix_seconds(now)?;
        let root = StoredCertificate::from_untrusted_pem("root certificate", cert_pem)?;
        check_root_certificate(&root, &self.trust_domain, now)?;
        let mut rotation = self.lock_rotation();
        if let Some(known) = rotation
            .journal
            .find(AuthorityKind::Root, &root.fingerprint_sha256)
        {
            return Err(CaError::rejected(format!(
                "root {} is already known ({})",
                root.fingerprint_sha256, known.state
            )));
        }
        refuse_if_root_prepared(&rotation)?;
        let mut next = rotation.clone();
        let (event, _) = next.add_root(
            &self.dir,
            root,
            None,
            AuthorityState::Prepared,
            now,
            "prepared from a certificate; its key is offline".to_string(),
        )?;
        failpoint("root.prepare.certificate-written");
        self.commit(&mut rotation, next)?;
        failpoint("root.prepare.committed");
        Ok(vec![event])
    }

    /// Activates the prepared root: it becomes `Active` and the previous root `Old`; a new
    /// intermediate signed by it becomes active at once, the previous intermediate `Old`. A
    /// prepared intermediate of the previous root, never used, is retired.
    ///
    /// # Errors
    /// [`CaError::RotationRefused`] if no root is prepared; if it has been published for less
    /// than [`publish_ahead`](super::CaConfig::publish_ahead) (relying parties may not trust
    /// it yet) and `force` is false; if it is not valid yet; or if its key is not on this
    /// server (then sign an intermediate offline: [`intermediate_csr`](Self::intermediate_csr),
    /// [`sign_intermediate_csr`](super::sign_intermediate_csr),
    /// [`import_intermediate`](Self::import_intermediate)). [`CaError::Io`],
    /// [`CaError::Crypto`].
    pub fn activate_root(
        &self,
        now: SystemTime,
        force: bool,
    ) -> Result<Vec<RotationEvent>, CaError> {
        let now = profiles::unix_seconds(now)?;
        let mut rotation = self.lock_rotation();
        let journal = &rotation.journal;
        let prepared = journal
            .single(AuthorityKind::Root, AuthorityState::Prepared)
            .ok_or_else(|| CaError::refused("no root is prepared; prepare one first"))?;
        let prepared_id = prepared.id.clone();
        let short = certificate::short_id(&prepared_id).to_string();
        let root = rotation.material.root(&prepared_id)?;
        if root.key.is_none() {
            return Err(CaError::refused(format!(
                "the key of prepared root {short} is not on this server; activate it by \
                 importing an intermediate it signed (intermediate_csr, sign_intermediate_csr, \
                 import_intermediate)"
            )));
        }
        if root.certificate.validity.not_before > now + CLOCK_SKEW_ALLOWANCE {
            return Err(CaError::refused(format!(
                "prepared root {short} is not valid before {}",
                display_time(root.certificate.validity.not_before)
            )));
        }
        let published_at = prepared.created_at;
        let ready_at = add_seconds(published_at, self.config.publish_ahead);
        let mut root_detail = format!(
            "activated by the operator after {} s in the bundle",
            now - published_at
        );
        if now < ready_at {
            if !force {
                return Err(CaError::refused(format!(
                    "prepared root {short} has been in the bundle for {} s, less than \
                     publish_ahead ({} s): relying parties may not trust it yet; wait until {} \
                     or force",
                    now - published_at,
                    self.config.publish_ahead.as_secs(),
                    display_time(ready_at)
                )));
            }
            root_detail.push_str(&format!(
                " (forced; publish_ahead is {} s: relying parties that have not fetched the \
                 bundle since {} will not trust new leaves)",
                self.config.publish_ahead.as_secs(),
                display_time(published_at)
            ));
        }

        let mut next = rotation.clone();
        let journal = &rotation.journal;
        let old_root_id = journal.active(AuthorityKind::Root)?.id.clone();
        let old_intermediate_id = journal.active(AuthorityKind::Intermediate)?.id.clone();
        let unused_intermediate = journal
            .single(AuthorityKind::Intermediate, AuthorityState::Prepared)
            .map(|record| record.id.clone());
        let (intermediate_event, _) = next.add_intermediate(
            &self.dir,
            &self.config,
            &prepared_id,
            AuthorityState::Active,
            now,
            format!("first intermediate of root {short}"),
        )?;
        failpoint("root.activate.intermediate-written");
        let mut events = vec![
            next.journal.transition(
                AuthorityKind::Root,
                &prepared_id,
                AuthorityState::Active,
                now,
                root_detail,
            )?,
            next.journal.transition(
                AuthorityKind::Root,
                &old_root_id,
                AuthorityState::Old,
                now,
                format!("replaced by root {short}"),
            )?,
        ];
        events.push(demote_active_intermediate(
            &mut next,
            &old_intermediate_id,
            &intermediate_event.id,
            now,
        )?);
        if let Some(unused) = unused_intermediate {
            events.push(next.journal.transition(
                AuthorityKind::Intermediate,
                &unused,
                AuthorityState::Retired,
                now,
                format!("never used: root {short} was activated with its own intermediate"),
            )?);
        }
        events.insert(2, intermediate_event);
        let retired = self.commit(&mut rotation, next)?;
        failpoint("root.activate.committed");
        material::delete_files(&retired);
        Ok(events)
    }

    /// Retires every old root: it leaves the bundle, its files are deleted, and so are its
    /// intermediates'. With no old root, it withdraws a prepared root instead (the rollback
    /// of a `prepare_root`: a prepared root has signed nothing).
    ///
    /// # Errors
    /// [`CaError::RotationRefused`] if there is no old root; if the active intermediate
    /// chains to it (even with `force`: the CA would issue leaves nobody trusts); or, unless
    /// `force`, while an intermediate it signed may have signed leaves that are still valid
    /// (the reason names each one and until when). With `force` those leaves stop verifying,
    /// and the events say which. [`CaError::Io`].
    pub fn retire_root(&self, now: SystemTime, force: bool) -> Result<Vec<RotationEvent>, CaError> {
        let now = profiles::unix_seconds(now)?;
        let mut rotation = self.lock_rotation();
        let journal = &rotation.journal;
        let mut old_roots: Vec<String> = journal
            .in_state(AuthorityKind::Root, AuthorityState::Old)
            .map(|root| root.id.clone())
            .collect();
        let withdrawing = old_roots.is_empty();
        if withdrawing {
            old_roots = journal
                .in_state(AuthorityKind::Root, AuthorityState::Prepared)
                .map(|root| root.id.clone())
                .collect();
        }
        if old_roots.is_empty() {
            return Err(CaError::refused(
                "there is no old root to retire (nor a prepared one to withdraw)",
            ));
        }
        let mut blockers = Vec::new();
        let mut dependents = Vec::new();
        for root_id in &old_roots {
            for intermediate in journal
                .of_kind(AuthorityKind::Intermediate)
                .filter(|record| {
                    record.issuer.as_deref() == Some(root_id.as_str())
                        && record.state != AuthorityState::Retired
                })
            {
                if intermediate.state == AuthorityState::Active {
                    return Err(CaError::refused(format!(
                        "the active intermediate {} chains to old root {}; activate a new root \
                         (or import an intermediate of the active root) first",
                        certificate::short_id(&intermediate.id),
                        certificate::short_id(root_id)
                    )));
                }
                if let Some(until) = intermediate_live_until(intermediate, &self.config, now)
                    && until > now
                {
                    blockers.push(format!(
                        "intermediate {} of root {} (old since {}) may have signed leaves valid \
                         until {}",
                        certificate::short_id(&intermediate.id),
                        certificate::short_id(root_id),
                        display_time(intermediate.old_since.unwrap_or_default()),
                        display_time(until)
                    ));
                }
                dependents.push(intermediate.id.clone());
            }
        }
        if !blockers.is_empty() && !force {
            return Err(CaError::refused(format!(
                "the old root is still needed: {}; retry after that or force",
                blockers.join("; ")
            )));
        }
        let root_detail = if withdrawing {
            "withdrawn by the operator before activation; it signed nothing".to_string()
        } else if blockers.is_empty() {
            "retired by the operator; nothing it signed is valid any more".to_string()
        } else {
            format!(
                "retired by the operator with force; these will stop verifying: {}",
                blockers.join("; ")
            )
        };
        let mut next = rotation.clone();
        let mut events = Vec::new();
        for root_id in &old_roots {
            events.push(next.journal.transition(
                AuthorityKind::Root,
                root_id,
                AuthorityState::Retired,
                now,
                root_detail.clone(),
            )?);
        }
        for intermediate_id in &dependents {
            events.push(next.journal.transition(
                AuthorityKind::Intermediate,
                intermediate_id,
                AuthorityState::Retired,
                now,
                "its root was retired".to_string(),
            )?);
        }
        let retired = self.commit(&mut rotation, next)?;
        failpoint("root.retire.committed");
        material::delete_files(&retired);
        failpoint("root.retire.files-deleted");
        Ok(events)
    }
}

fn refuse_if_root_prepared(rotation: &Rotation) -> Result<(), CaError> {
    match rotation
        .journal
        .single(AuthorityKind::Root, AuthorityState::Prepared)
    {
        Some(prepared) => Err(CaError::refused(format!(
            "root {} is already prepared (since {}); activate it first",
            certificate::short_id(&prepared.id),
            display_time(prepared.created_at)
        ))),
        None => Ok(()),
    }
}

/// What a root handed in by an operator must be.
pub(super) fn check_root_certificate(
    root: &StoredCertificate,
    trust_domain: &mayfly_sdk::TrustDomain,
    now: i64,
) -> Result<(), CaError> {
    if !root.is_ca || !root.can_sign_certificates {
        return Err(CaError::rejected(
            "the root certificate is not a CA allowed to sign certificates",
        ));
    }
    if root.path_len == Some(0) {
        return Err(CaError::rejected(
            "the root certificate has pathLenConstraint 0; it cannot sign intermediates",
        ));
    }
    if !root.self_issued || !root.is_issued_by(root) {
        return Err(CaError::rejected("the root certificate is not self-signed"));
    }
    if !root.names_trust_domain(trust_domain) {
        return Err(CaError::rejected(format!(
            "the root certificate names {}; expected exactly {}",
            root.uri_names_text(),
            trust_domain.id_string()
        )));
    }
    if root.validity.not_after <= now {
        return Err(CaError::rejected(format!(
            "the root certificate expired at {}",
            display_time(root.validity.not_after)
        )));
    }
    Ok(())
}
