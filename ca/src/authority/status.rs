//! What the CA holds and what needs an operator ([`CertificateAuthority::status`]).

use std::time::SystemTime;

use super::journal::{AuthorityRecord, Journal};
use super::material::Rotation;
use super::model::{AuthorityKind, AuthorityState, AuthorityStatus, CaStatus};
use super::profiles::{self, add_seconds, display_time};
use super::{CaConfig, CertificateAuthority, certificate};

impl CertificateAuthority {
    /// Every authority in the journal (retired ones included, for audit) and warnings about
    /// what needs an operator: an intermediate that must be signed offline, a root near its
    /// end, an old root that can be retired. Reads memory only.
    pub fn status(&self, now: SystemTime) -> CaStatus {
        // A clock before 1970 is not worth failing a status report over.
        let now = profiles::unix_seconds(now).unwrap_or_default();
        let rotation = self.lock_rotation();
        let journal = &rotation.journal;
        let mut authorities: Vec<AuthorityStatus> = journal
            .authorities
            .iter()
            .map(|record| authority_status(journal, record, &self.config, now))
            .collect();
        // Stable: within a kind, journal order, which is the order they were made.
        authorities.sort_by_key(|authority| authority.kind);
        CaStatus {
            authorities,
            warnings: warnings(&rotation, &self.config, now),
        }
    }
}

fn authority_status(
    journal: &Journal,
    record: &AuthorityRecord,
    config: &CaConfig,
    now: i64,
) -> AuthorityStatus {
    let has_certificate = record.certificate.is_some() && record.kind != AuthorityKind::JwtKey;
    AuthorityStatus {
        kind: record.kind,
        id: record.id.clone(),
        state: record.state,
        not_before: record.not_before,
        not_after: record.not_after,
        fingerprint_sha256: has_certificate.then(|| record.id.clone()),
        issuer: record.issuer.clone(),
        key_on_server: record.key.is_some() && record.state != AuthorityState::Retired,
        live_until: live_until(journal, record, config, now),
        since: record.since(),
    }
}

/// The latest time something `record` signed may still be valid at `now`; `None` if nothing
/// it signed can be (prepared, pending, retired, or a root without live intermediates).
pub(super) fn live_until(
    journal: &Journal,
    record: &AuthorityRecord,
    config: &CaConfig,
    now: i64,
) -> Option<i64> {
    match record.kind {
        AuthorityKind::Intermediate => intermediate_live_until(record, config, now),
        AuthorityKind::JwtKey => {
            let since = signing_ended(record, now)?;
            Some(add_seconds(since, config.max_jwt_ttl))
        }
        AuthorityKind::Root => journal
            .of_kind(AuthorityKind::Intermediate)
            .filter(|intermediate| intermediate.issuer.as_deref() == Some(record.id.as_str()))
            .filter_map(|intermediate| intermediate_live_until(intermediate, config, now))
            .max(),
    }
}

/// Leaves of an intermediate live at most `max_x509_ttl` past the last signature, and never
/// past the intermediate itself.
pub(super) fn intermediate_live_until(
    record: &AuthorityRecord,
    config: &CaConfig,
    now: i64,
) -> Option<i64> {
    let since = signing_ended(record, now)?;
    let until = add_seconds(since, config.max_x509_ttl);
    Some(
        record
            .not_after
            .map_or(until, |not_after| until.min(not_after)),
    )
}

/// When the authority signed last: `now` while active, the time it became old after.
fn signing_ended(record: &AuthorityRecord, now: i64) -> Option<i64> {
    match record.state {
        AuthorityState::Active => Some(now),
        AuthorityState::Old => record.old_since,
        AuthorityState::Pending | AuthorityState::Prepared | AuthorityState::Retired => None,
    }
}

fn warnings(rotation: &Rotation, config: &CaConfig, now: i64) -> Vec<String> {
    let journal = &rotation.journal;
    let mut warnings = Vec::new();
    let (Ok(root), Ok(intermediate)) = (
        journal.active(AuthorityKind::Root),
        journal.active(AuthorityKind::Intermediate),
    ) else {
        return warnings;
    };
    let root_key_here = rotation
        .material
        .roots
        .get(&root.id)
        .is_some_and(|material| material.key.is_some());
    let intermediate_not_after = intermediate.not_after.unwrap_or_default();
    let half_life = intermediate
        .not_before
        .map(|not_before| not_before + (intermediate_not_after - not_before) / 2)
        .unwrap_or_default();
    let successor_prepared = journal
        .single(AuthorityKind::Intermediate, AuthorityState::Prepared)
        .is_some();

    if let Some(pending) = journal.single(AuthorityKind::Intermediate, AuthorityState::Pending) {
        warnings.push(format!(
            "intermediate key {} is waiting since {} for a certificate signed offline \
             (sign_intermediate_csr, then import_intermediate)",
            pending.id,
            display_time(pending.created_at)
        ));
    } else if !root_key_here && !successor_prepared && now >= half_life {
        warnings.push(format!(
            "the active intermediate {} passed half its life at {} and expires at {}; the key \
             of root {} is not on this server, so its successor needs an offline signature: \
             intermediate_csr, sign_intermediate_csr, import_intermediate",
            certificate::short_id(&intermediate.id),
            display_time(half_life),
            display_time(intermediate_not_after),
            certificate::short_id(&root.id)
        ));
    }
    let max_x509 = i64::try_from(config.max_x509_ttl.as_secs()).unwrap_or(i64::MAX);
    if intermediate_not_after.saturating_sub(now) < max_x509 {
        warnings.push(format!(
            "the active intermediate {} expires at {}: leaves are cut short to it",
            certificate::short_id(&intermediate.id),
            display_time(intermediate_not_after)
        ));
    }
    let root_not_after = root.not_after.unwrap_or_default();
    let intermediate_ttl = i64::try_from(config.intermediate_ttl.as_secs()).unwrap_or(i64::MAX);
    if root_not_after.saturating_sub(now) < intermediate_ttl {
        warnings.push(format!(
            "the active root {} expires at {}, within one intermediate lifetime; intermediates \
             cannot outlive it: prepare and activate a new root",
            certificate::short_id(&root.id),
            display_time(root_not_after)
        ));
    }
    if let Some(prepared) = journal.single(AuthorityKind::Root, AuthorityState::Prepared)
        && prepared.key.is_none()
    {
        warnings.push(format!(
            "prepared root {} has no key on this server: activate it by importing an \
             intermediate it signed (intermediate_csr, sign_intermediate_csr, \
             import_intermediate)",
            certificate::short_id(&prepared.id)
        ));
    }
    for old in journal.in_state(AuthorityKind::Root, AuthorityState::Old) {
        match live_until(journal, old, config, now) {
            Some(until) if until > now => {}
            _ => warnings.push(format!(
                "old root {} can be retired: nothing it signed is valid any more",
                certificate::short_id(&old.id)
            )),
        }
    }
    warnings
}
