//! Automatic rotation of intermediates and JWT keys ([`CertificateAuthority::rotate_due`]).
//!
//! For each kind the same three steps, each committed on its own:
//! 1. prepare a successor once the active one has passed half its life;
//! 2. activate the successor once it has been published for `publish_ahead` (an
//!    intermediate at once if the active one cannot sign a full-length leaf any more);
//! 3. retire old ones once nothing they signed can still be valid.

use std::path::PathBuf;
use std::time::SystemTime;

use super::journal::AuthorityRecord;
use super::material::{self, Rotation};
use super::model::{AuthorityKind, AuthorityState, RotationEvent};
use super::profiles::{self, add_seconds, display_time};
use super::status::live_until;
use super::{CertificateAuthority, certificate};
use crate::error::CaError;
use crate::failpoint::failpoint;

/// What a load-time repair changed.
#[derive(Default)]
pub(super) struct Repair {
    pub(super) events: Vec<RotationEvent>,
    pub(super) files: Vec<PathBuf>,
}

impl CertificateAuthority {
    /// Runs every rotation step that is due at `now`, and returns what changed. Call it
    /// periodically (every minute is plenty); when nothing is due it only reads memory.
    ///
    /// Steps, each persisted (journal) before the next one starts:
    /// 1. when the active intermediate has passed half its life, or the active JWT key has
    ///    been active for half of [`jwt_key_ttl`](super::CaConfig::jwt_key_ttl), and no
    ///    successor is prepared: prepare one (an intermediate signed by the active root;
    ///    skipped, with a warning in [`status`](Self::status), when that root's key is not
    ///    on the server or the root ends before the active intermediate does);
    /// 2. when a prepared successor has been published for
    ///    [`publish_ahead`](super::CaConfig::publish_ahead): activate it, the previous one
    ///    becomes old. An intermediate is activated at once when the active one has less
    ///    than [`max_x509_ttl`](super::CaConfig::max_x509_ttl) left;
    /// 3. old intermediates and JWT keys whose leaves and tokens have all expired
    ///    (`old_since + max ttl`) are retired: out of the bundle, files deleted.
    ///
    /// Roots are never rotated here; see [`prepare_root`](Self::prepare_root).
    ///
    /// # Errors
    /// [`CaError::Io`] or [`CaError::Crypto`] if a step cannot write its files or journal.
    /// Intermediate and JWT steps run independently, so one failing does not hold the other
    /// back; the first error is returned, and what the others did is persisted (see
    /// [`status`](Self::status)). A failed step changes nothing: the previous state stays
    /// active in memory and on disk.
    pub fn rotate_due(&self, now: SystemTime) -> Result<Vec<RotationEvent>, CaError> {
        let now = profiles::unix_seconds(now)?;
        let mut rotation = self.lock_rotation();
        let parts = [
            self.rotate_intermediates(&mut rotation, now),
            self.rotate_jwt_keys(&mut rotation, now),
            self.retire_old(&mut rotation, now),
        ];
        let mut events = Vec::new();
        for part in parts {
            events.extend(part?);
        }
        Ok(events)
    }

    /// When the next automatic step of the intermediate CA's and of the JWT
    /// key's rotation falls due, in Unix seconds (in the past when one is
    /// overdue, e.g. a successor that cannot be made while the root's key is
    /// offline): preparing a successor once the active one is half through
    /// its life, or activating the prepared one after
    /// [`publish_ahead`](super::CaConfig::publish_ahead) (an intermediate
    /// earlier when the active one cannot sign a full-length leaf any more).
    /// A kind without an active authority is left out; retiring old ones is
    /// not counted.
    pub fn next_rotation_steps(&self) -> Vec<(AuthorityKind, i64)> {
        let rotation = self.lock_rotation();
        let journal = &rotation.journal;
        let mut steps = Vec::with_capacity(2);
        if let Ok(active) = journal.active(AuthorityKind::Intermediate) {
            let due = match journal.single(AuthorityKind::Intermediate, AuthorityState::Prepared) {
                Some(prepared) => {
                    let published = add_seconds(prepared.created_at, self.config.publish_ahead);
                    let early = active.not_after.map(|not_after| {
                        not_after.saturating_sub(
                            i64::try_from(self.config.max_x509_ttl.as_secs()).unwrap_or(i64::MAX),
                        )
                    });
                    Some(early.map_or(published, |early| published.min(early)))
                }
                None => half_life(active),
            };
            steps.extend(due.map(|due| (AuthorityKind::Intermediate, due)));
        }
        if let Ok(active) = journal.active(AuthorityKind::JwtKey) {
            let due = match journal.single(AuthorityKind::JwtKey, AuthorityState::Prepared) {
                Some(prepared) => add_seconds(prepared.created_at, self.config.publish_ahead),
                None => add_seconds(
                    active.activated_at.unwrap_or(active.created_at),
                    self.config.jwt_key_ttl / 2,
                ),
            };
            steps.push((AuthorityKind::JwtKey, due));
        }
        steps
    }

    fn rotate_intermediates(
        &self,
        rotation: &mut Rotation,
        now: i64,
    ) -> Result<Vec<RotationEvent>, CaError> {
        let mut events = self.prepare_intermediate_if_due(rotation, now)?;
        events.extend(self.activate_intermediate_if_due(rotation, now)?);
        Ok(events)
    }

    fn rotate_jwt_keys(
        &self,
        rotation: &mut Rotation,
        now: i64,
    ) -> Result<Vec<RotationEvent>, CaError> {
        let mut events = self.prepare_jwt_key_if_due(rotation, now)?;
        events.extend(self.activate_jwt_key_if_due(rotation, now)?);
        Ok(events)
    }

    fn prepare_intermediate_if_due(
        &self,
        rotation: &mut Rotation,
        now: i64,
    ) -> Result<Vec<RotationEvent>, CaError> {
        let journal = &rotation.journal;
        if journal
            .single(AuthorityKind::Intermediate, AuthorityState::Prepared)
            .is_some()
        {
            return Ok(Vec::new());
        }
        let active = journal.active(AuthorityKind::Intermediate)?;
        let Some(half_life) = half_life(active) else {
            return Ok(Vec::new());
        };
        if now < half_life {
            return Ok(Vec::new());
        }
        let root_id = journal.active(AuthorityKind::Root)?.id.clone();
        if !self.can_make_useful_intermediate(rotation, &root_id, active, now)? {
            return Ok(Vec::new());
        }
        let detail = format!(
            "the active intermediate {} passed half its life at {}",
            certificate::short_id(&active.id),
            display_time(half_life)
        );
        let mut next = rotation.clone();
        let (event, _) = next.add_intermediate(
            &self.dir,
            &self.config,
            &root_id,
            AuthorityState::Prepared,
            now,
            detail,
        )?;
        failpoint("intermediate.prepare.key-written");
        self.commit(rotation, next)?;
        failpoint("intermediate.prepare.committed");
        Ok(vec![event])
    }

    /// Whether the active root can sign a successor here that outlives the active
    /// intermediate. When it cannot, [`status`](Self::status) says why.
    fn can_make_useful_intermediate(
        &self,
        rotation: &Rotation,
        root_id: &str,
        active: &AuthorityRecord,
        now: i64,
    ) -> Result<bool, CaError> {
        let root = rotation.material.root(root_id)?;
        if root.key.is_none() {
            return Ok(false);
        }
        let successor_not_after =
            add_seconds(now, self.config.intermediate_ttl).min(root.certificate.validity.not_after);
        Ok(successor_not_after > active.not_after.unwrap_or(i64::MIN))
    }

    fn activate_intermediate_if_due(
        &self,
        rotation: &mut Rotation,
        now: i64,
    ) -> Result<Vec<RotationEvent>, CaError> {
        let journal = &rotation.journal;
        let Some(prepared) = journal.single(AuthorityKind::Intermediate, AuthorityState::Prepared)
        else {
            return Ok(Vec::new());
        };
        let active = journal.active(AuthorityKind::Intermediate)?;
        let published_until = add_seconds(prepared.created_at, self.config.publish_ahead);
        let active_not_after = active.not_after.unwrap_or(i64::MIN);
        let detail = if now >= published_until {
            format!(
                "published for {} s (publish_ahead)",
                self.config.publish_ahead.as_secs()
            )
        } else if active_not_after.saturating_sub(now)
            < i64::try_from(self.config.max_x509_ttl.as_secs()).unwrap_or(i64::MAX)
        {
            format!(
                "activated early: the active intermediate {} expires at {} and cannot sign a \
                 full-length leaf ({} s) any more",
                certificate::short_id(&active.id),
                display_time(active_not_after),
                self.config.max_x509_ttl.as_secs()
            )
        } else {
            return Ok(Vec::new());
        };
        let (prepared_id, active_id) = (prepared.id.clone(), active.id.clone());
        let mut next = rotation.clone();
        let mut events = vec![next.journal.transition(
            AuthorityKind::Intermediate,
            &prepared_id,
            AuthorityState::Active,
            now,
            detail,
        )?];
        events.push(demote_active_intermediate(
            &mut next,
            &active_id,
            &prepared_id,
            now,
        )?);
        let retired = self.commit(rotation, next)?;
        failpoint("intermediate.activate.committed");
        material::delete_files(&retired);
        Ok(events)
    }

    fn prepare_jwt_key_if_due(
        &self,
        rotation: &mut Rotation,
        now: i64,
    ) -> Result<Vec<RotationEvent>, CaError> {
        let journal = &rotation.journal;
        if journal
            .single(AuthorityKind::JwtKey, AuthorityState::Prepared)
            .is_some()
        {
            return Ok(Vec::new());
        }
        let active = journal.active(AuthorityKind::JwtKey)?;
        let activated_at = active.activated_at.unwrap_or(active.created_at);
        let due = add_seconds(activated_at, self.config.jwt_key_ttl / 2);
        if now < due {
            return Ok(Vec::new());
        }
        let detail = format!(
            "the active JWT key {} has been active since {}, half of its {} s",
            active.id,
            display_time(activated_at),
            self.config.jwt_key_ttl.as_secs()
        );
        let mut next = rotation.clone();
        let (event, _) = next.add_jwt_key(&self.dir, AuthorityState::Prepared, now, detail)?;
        failpoint("jwt.prepare.key-written");
        self.commit(rotation, next)?;
        failpoint("jwt.prepare.committed");
        Ok(vec![event])
    }

    fn activate_jwt_key_if_due(
        &self,
        rotation: &mut Rotation,
        now: i64,
    ) -> Result<Vec<RotationEvent>, CaError> {
        let journal = &rotation.journal;
        let Some(prepared) = journal.single(AuthorityKind::JwtKey, AuthorityState::Prepared) else {
            return Ok(Vec::new());
        };
        // No early activation for JWT keys: a key relying parties have not fetched yet would
        // make every token it signs fail, and the active key stays usable meanwhile.
        if now < add_seconds(prepared.created_at, self.config.publish_ahead) {
            return Ok(Vec::new());
        }
        let prepared_id = prepared.id.clone();
        let active_id = journal.active(AuthorityKind::JwtKey)?.id.clone();
        let mut next = rotation.clone();
        let events = vec![
            next.journal.transition(
                AuthorityKind::JwtKey,
                &prepared_id,
                AuthorityState::Active,
                now,
                format!(
                    "published for {} s (publish_ahead)",
                    self.config.publish_ahead.as_secs()
                ),
            )?,
            next.journal.transition(
                AuthorityKind::JwtKey,
                &active_id,
                AuthorityState::Old,
                now,
                format!("replaced by {prepared_id}"),
            )?,
        ];
        self.commit(rotation, next)?;
        failpoint("jwt.activate.committed");
        Ok(events)
    }

    /// Retires old intermediates and JWT keys once nothing they signed can be valid.
    fn retire_old(&self, rotation: &mut Rotation, now: i64) -> Result<Vec<RotationEvent>, CaError> {
        let journal = &rotation.journal;
        let due: Vec<(AuthorityKind, String, i64)> = journal
            .authorities
            .iter()
            .filter(|record| {
                record.state == AuthorityState::Old && record.kind != AuthorityKind::Root
            })
            .filter_map(|record| {
                let until = live_until(journal, record, &self.config, now)?;
                (until <= now).then(|| (record.kind, record.id.clone(), until))
            })
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut next = rotation.clone();
        let mut events = Vec::with_capacity(due.len());
        for (kind, id, until) in due {
            let detail = format!("everything it signed expired by {}", display_time(until));
            events.push(next.journal.transition(
                kind,
                &id,
                AuthorityState::Retired,
                now,
                detail,
            )?);
        }
        let retired = self.commit(rotation, next)?;
        failpoint("retire.committed");
        material::delete_files(&retired);
        failpoint("retire.files-deleted");
        Ok(events)
    }

    /// At load: an active intermediate that has expired is replaced at once, by the prepared
    /// one if it is still valid, else by a new one from the active root (if its key is
    /// here). With an offline root nothing can be done here; [`status`](Self::status) says
    /// what to do, and issuing fails with [`CaError::SignerExpired`] meanwhile.
    pub(super) fn replace_expired_intermediate(&self, now: i64) -> Result<Repair, CaError> {
        let mut rotation = self.lock_rotation();
        let journal = &rotation.journal;
        let active = journal.active(AuthorityKind::Intermediate)?;
        let active_not_after = active.not_after.unwrap_or(i64::MIN);
        if active_not_after > now {
            return Ok(Repair::default());
        }
        let active_id = active.id.clone();
        let detail = format!(
            "the active intermediate {} expired at {}",
            certificate::short_id(&active_id),
            display_time(active_not_after)
        );
        let root_id = journal.active(AuthorityKind::Root)?.id.clone();
        let prepared = journal
            .single(AuthorityKind::Intermediate, AuthorityState::Prepared)
            .filter(|prepared| prepared.not_after.is_some_and(|not_after| not_after > now))
            .map(|prepared| prepared.id.clone());
        let root_key_here = rotation.material.root(&root_id)?.key.is_some();

        let mut next = rotation.clone();
        let mut repair = Repair::default();
        let successor = match prepared {
            Some(prepared_id) => {
                repair.events.push(next.journal.transition(
                    AuthorityKind::Intermediate,
                    &prepared_id,
                    AuthorityState::Active,
                    now,
                    detail,
                )?);
                prepared_id
            }
            None if root_key_here => {
                let (event, written) = next.add_intermediate(
                    &self.dir,
                    &self.config,
                    &root_id,
                    AuthorityState::Active,
                    now,
                    detail,
                )?;
                let id = event.id.clone();
                repair.events.push(event);
                repair.files = written;
                id
            }
            None => return Ok(Repair::default()),
        };
        repair.events.push(demote_active_intermediate(
            &mut next, &active_id, &successor, now,
        )?);
        let retired = self.commit(&mut rotation, next)?;
        material::delete_files(&retired);
        Ok(repair)
    }
}

/// The former active intermediate becomes old, or retired straight away if it has expired
/// (nothing it signed can be valid: no leaf outlives its signer).
pub(super) fn demote_active_intermediate(
    next: &mut Rotation,
    active_id: &str,
    successor_id: &str,
    now: i64,
) -> Result<RotationEvent, CaError> {
    let expired = next
        .journal
        .find(AuthorityKind::Intermediate, active_id)
        .and_then(|record| record.not_after)
        .is_some_and(|not_after| not_after <= now);
    let (state, detail) = if expired {
        (
            AuthorityState::Retired,
            format!(
                "replaced by {} after it expired; nothing it signed is valid",
                certificate::short_id(successor_id)
            ),
        )
    } else {
        (
            AuthorityState::Old,
            format!("replaced by {}", certificate::short_id(successor_id)),
        )
    };
    next.journal
        .transition(AuthorityKind::Intermediate, active_id, state, now, detail)
}

/// The middle of a certificate's planned life. Its `notBefore` is backdated for clock skew
/// when we make it, so the life starts at the later of that and its creation, as far as the
/// backdating goes: with short lifetimes the backdating would otherwise count as life already
/// spent, and each successor would be due at once.
fn half_life(record: &AuthorityRecord) -> Option<i64> {
    let (not_before, not_after) = (record.not_before?, record.not_after?);
    let start = record
        .created_at
        .min(not_before.saturating_add(profiles::CLOCK_SKEW_ALLOWANCE))
        .max(not_before)
        .min(not_after);
    Some(start + (not_after - start) / 2)
}
