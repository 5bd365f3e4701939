//! The rotation journal, `<dir>/rotation.json`: the one record of which authorities exist,
//! their states and their files. On load it is the truth; files it does not name are ignored.
//!
//! ```json
//! {
//!   "version": 1,
//!   "trust_domain": "example.org",
//!   "generation": 7,
//!   "authorities": [
//!     { "kind": "root", "id": "<sha256 hex of the DER>", "state": "active",
//!       "certificate": "root-0123456789abcdef.crt", "key": "root-0123456789abcdef.key",
//!       "not_before": 1748735970, "not_after": 2064095970, "created_at": 1748736000,
//!       "activated_at": 1748736000, "old_since": null, "retired_at": null, "issuer": null },
//!     { "kind": "intermediate", "id": "…", "state": "old", "issuer": "<root id>", … },
//!     { "kind": "jwt-key", "id": "<kid>", "state": "prepared", "certificate": null,
//!       "key": "jwt-AbCdEf0123456789.key", "not_before": null, "not_after": null, … }
//!   ]
//! }
//! ```
//!
//! `key` is `null` for a root whose key is kept offline. `generation` counts changes to the
//! published bundle and to the active signers, so it never goes backwards across restarts.
//!
//! The journal is replaced atomically (temporary file, fsync, rename, directory fsync) with
//! mode `0600`; that rename is the commit point of every rotation step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::{AuthorityKind, AuthorityState, RotationEvent};
use crate::error::CaError;
use mayfly_sdk::files;

/// File name of the journal in the CA directory.
pub const JOURNAL_FILE: &str = "rotation.json";
/// The only journal format this version reads and writes.
const JOURNAL_VERSION: u32 = 1;
/// The journal grows with every rotation; retired records beyond this many (the oldest) are
/// dropped, which bounds it to a few tens of KiB.
const MAX_RETIRED_RECORDS: usize = 64;
/// Refused above this size before parsing.
const MAX_JOURNAL_LEN: u64 = 1024 * 1024;

/// The persisted rotation state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Journal {
    pub(crate) version: u32,
    pub(crate) trust_domain: String,
    pub(crate) generation: u64,
    pub(crate) authorities: Vec<AuthorityRecord>,
}

/// One authority. Times are seconds since the Unix epoch; file names are relative to the CA
/// directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthorityRecord {
    pub(crate) kind: AuthorityKind,
    pub(crate) id: String,
    pub(crate) state: AuthorityState,
    pub(crate) certificate: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) not_before: Option<i64>,
    pub(crate) not_after: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) activated_at: Option<i64>,
    pub(crate) old_since: Option<i64>,
    pub(crate) retired_at: Option<i64>,
    /// For intermediates: the ID of the root that signed the certificate.
    pub(crate) issuer: Option<String>,
}

impl AuthorityRecord {
    /// When the record entered its current state.
    pub(crate) fn since(&self) -> Option<i64> {
        match self.state {
            AuthorityState::Pending | AuthorityState::Prepared => Some(self.created_at),
            AuthorityState::Active => self.activated_at,
            AuthorityState::Old => self.old_since,
            AuthorityState::Retired => self.retired_at,
        }
    }

    /// The files the record names.
    pub(crate) fn file_names(&self) -> impl Iterator<Item = &str> {
        self.certificate
            .iter()
            .chain(self.key.iter())
            .map(String::as_str)
    }
}

impl Journal {
    pub(crate) fn new(trust_domain: &str) -> Self {
        Self {
            version: JOURNAL_VERSION,
            trust_domain: trust_domain.to_string(),
            generation: 1,
            authorities: Vec::new(),
        }
    }

    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join(JOURNAL_FILE)
    }

    /// Reads and checks the journal in `dir`; `None` if there is none.
    ///
    /// # Errors
    /// [`CaError::JournalInvalid`] for a journal that cannot be parsed or breaks an invariant
    /// (see [`Journal::check`]); [`CaError::Io`], [`CaError::FileTooLarge`].
    pub(crate) fn read(dir: &Path) -> Result<Option<Self>, CaError> {
        let path = Self::path(dir);
        if !files::exists(&path)? {
            return Ok(None);
        }
        let bytes = files::read_file_with_limit(&path, MAX_JOURNAL_LEN)?;
        let journal: Self =
            serde_json::from_slice(&bytes).map_err(|e| CaError::JournalInvalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        journal.check().map_err(|reason| CaError::JournalInvalid {
            path: path.clone(),
            reason,
        })?;
        Ok(Some(journal))
    }

    /// Replaces the journal in `dir` atomically, mode `0600`: the commit point.
    pub(crate) fn write(&self, dir: &Path) -> Result<PathBuf, CaError> {
        let path = Self::path(dir);
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|e| CaError::internal("encoding the rotation journal", e))?;
        text.push(b'\n');
        files::write_secret_atomic(&path, &text)?;
        Ok(path)
    }

    /// The invariants every journal keeps; a string saying which one is broken.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.version != JOURNAL_VERSION {
            return Err(format!(
                "version {} (this build reads version {JOURNAL_VERSION})",
                self.version
            ));
        }
        let mut seen = BTreeSet::new();
        for record in &self.authorities {
            if !seen.insert((record.kind, record.id.as_str())) {
                return Err(format!("{} {} is listed twice", record.kind, record.id));
            }
            check_record(record)?;
        }
        for kind in [
            AuthorityKind::Root,
            AuthorityKind::Intermediate,
            AuthorityKind::JwtKey,
        ] {
            let count = |state| self.in_state(kind, state).count();
            if count(AuthorityState::Active) != 1 {
                return Err(format!(
                    "{} active {kind} authorities (exactly one is required)",
                    count(AuthorityState::Active)
                ));
            }
            if count(AuthorityState::Prepared) > 1 {
                return Err(format!("more than one prepared {kind}"));
            }
            if count(AuthorityState::Pending) > usize::from(kind == AuthorityKind::Intermediate) {
                return Err(format!("too many pending {kind} authorities"));
            }
        }
        for record in self.of_kind(AuthorityKind::Intermediate) {
            if let Some(issuer) = &record.issuer
                && record.state != AuthorityState::Retired
                && !self
                    .of_kind(AuthorityKind::Root)
                    .any(|root| &root.id == issuer && root.state != AuthorityState::Retired)
            {
                return Err(format!(
                    "intermediate {} names issuer {issuer}, which is not a live root",
                    record.id
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn of_kind(&self, kind: AuthorityKind) -> impl Iterator<Item = &AuthorityRecord> {
        self.authorities.iter().filter(move |r| r.kind == kind)
    }

    pub(crate) fn in_state(
        &self,
        kind: AuthorityKind,
        state: AuthorityState,
    ) -> impl Iterator<Item = &AuthorityRecord> {
        self.of_kind(kind).filter(move |r| r.state == state)
    }

    /// The one record of `kind` in `state`, if any (for Active there always is one).
    pub(crate) fn single(
        &self,
        kind: AuthorityKind,
        state: AuthorityState,
    ) -> Option<&AuthorityRecord> {
        self.in_state(kind, state).next()
    }

    /// The active record of `kind`; an error only if the journal's invariant is broken.
    pub(crate) fn active(&self, kind: AuthorityKind) -> Result<&AuthorityRecord, CaError> {
        self.single(kind, AuthorityState::Active).ok_or_else(|| {
            CaError::internal("reading the rotation journal", format!("no active {kind}"))
        })
    }

    pub(crate) fn find(&self, kind: AuthorityKind, id: &str) -> Option<&AuthorityRecord> {
        self.of_kind(kind).find(|r| r.id == id)
    }

    /// Adds a new record and reports it.
    pub(crate) fn add(&mut self, record: AuthorityRecord, detail: String) -> RotationEvent {
        let event = RotationEvent {
            kind: record.kind,
            id: record.id.clone(),
            from: None,
            to: record.state,
            detail,
        };
        self.authorities.push(record);
        event
    }

    /// Moves a record to `to` at `now`, stamping the matching time, and reports it.
    pub(crate) fn transition(
        &mut self,
        kind: AuthorityKind,
        id: &str,
        to: AuthorityState,
        now: i64,
        detail: String,
    ) -> Result<RotationEvent, CaError> {
        let record = self
            .authorities
            .iter_mut()
            .find(|r| r.kind == kind && r.id == id)
            .ok_or_else(|| {
                CaError::internal("updating the rotation journal", format!("no {kind} {id}"))
            })?;
        let from = record.state;
        record.state = to;
        match to {
            AuthorityState::Pending | AuthorityState::Prepared => record.created_at = now,
            AuthorityState::Active => record.activated_at = Some(now),
            AuthorityState::Old => record.old_since = Some(now),
            AuthorityState::Retired => record.retired_at = Some(now),
        }
        Ok(RotationEvent {
            kind,
            id: id.to_string(),
            from: Some(from),
            to,
            detail,
        })
    }

    /// Drops the oldest retired records beyond [`MAX_RETIRED_RECORDS`].
    pub(crate) fn prune_retired(&mut self) {
        let retired = self
            .authorities
            .iter()
            .filter(|r| r.state == AuthorityState::Retired)
            .count();
        let excess = retired.saturating_sub(MAX_RETIRED_RECORDS);
        if excess == 0 {
            return;
        }
        let mut order: Vec<(i64, usize)> = self
            .authorities
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == AuthorityState::Retired)
            .map(|(index, r)| (r.retired_at.unwrap_or(0), index))
            .collect();
        order.sort_unstable();
        let drop: BTreeSet<usize> = order.iter().map(|&(_, index)| index).take(excess).collect();
        let mut index = 0;
        self.authorities.retain(|_| {
            let keep = !drop.contains(&index);
            index += 1;
            keep
        });
    }

    /// What the published bundle (roots and JWT keys that are prepared, active or old) and
    /// the active signers depend on: a change here is a new generation.
    pub(crate) fn published_view(&self) -> Vec<(AuthorityKind, &str, AuthorityState)> {
        self.authorities
            .iter()
            .filter(|r| match r.kind {
                AuthorityKind::Intermediate => r.state == AuthorityState::Active,
                AuthorityKind::Root | AuthorityKind::JwtKey => r.state.is_published(),
            })
            .map(|r| (r.kind, r.id.as_str(), r.state))
            .collect()
    }
}

fn check_record(record: &AuthorityRecord) -> Result<(), String> {
    let name = || format!("{} {}", record.kind, record.id);
    if record.id.is_empty() {
        return Err(format!("a {} has an empty id", record.kind));
    }
    for file in record.file_names() {
        if !is_plain_file_name(file) {
            return Err(format!(
                "{} names the file {file:?}, not a plain file name",
                name()
            ));
        }
    }
    let live = record.state != AuthorityState::Retired;
    match record.kind {
        AuthorityKind::Root => {
            if record.certificate.is_none() || record.not_after.is_none() {
                return Err(format!("{} has no certificate", name()));
            }
            if record.state == AuthorityState::Pending {
                return Err(format!("{} is pending; only intermediates can be", name()));
            }
        }
        AuthorityKind::Intermediate => {
            if live && record.key.is_none() {
                return Err(format!("{} has no key", name()));
            }
            let pending = record.state == AuthorityState::Pending;
            if !pending
                && (record.certificate.is_none()
                    || record.issuer.is_none()
                    || record.not_before.is_none()
                    || record.not_after.is_none())
            {
                return Err(format!("{} has no certificate, validity or issuer", name()));
            }
        }
        AuthorityKind::JwtKey => {
            if live && record.key.is_none() {
                return Err(format!("{} has no key", name()));
            }
            if record.state == AuthorityState::Pending {
                return Err(format!("{} is pending; only intermediates can be", name()));
            }
        }
    }
    Ok(())
}

/// A name inside the CA directory: no separators, no `.`/`..`, not hidden (temporary files
/// are hidden).
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= 255
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn record(kind: AuthorityKind, id: &str, state: AuthorityState) -> AuthorityRecord {
        AuthorityRecord {
            kind,
            id: id.to_string(),
            state,
            certificate: (kind != AuthorityKind::JwtKey).then(|| format!("{id}.crt")),
            key: Some(format!("{id}.key")),
            not_before: Some(0),
            not_after: Some(100),
            created_at: 0,
            activated_at: None,
            old_since: None,
            retired_at: None,
            issuer: (kind == AuthorityKind::Intermediate).then(|| "r1".to_string()),
        }
    }

    fn minimal() -> Journal {
        let mut journal = Journal::new("example.org");
        journal.authorities = vec![
            record(AuthorityKind::Root, "r1", AuthorityState::Active),
            record(AuthorityKind::Intermediate, "i1", AuthorityState::Active),
            record(AuthorityKind::JwtKey, "j1", AuthorityState::Active),
        ];
        journal
    }

    #[test]
    fn invariants_are_checked_next_to_a_valid_journal() {
        assert_eq!(minimal().check(), Ok(()));

        let mut two_active = minimal();
        two_active
            .authorities
            .push(record(AuthorityKind::JwtKey, "j2", AuthorityState::Active));
        assert!(two_active.check().unwrap_err().contains("2 active jwt-key"));

        let mut none_active = minimal();
        none_active.authorities.remove(1);
        assert!(none_active.check().is_err());

        let mut duplicate = minimal();
        duplicate
            .authorities
            .push(record(AuthorityKind::JwtKey, "j1", AuthorityState::Old));
        assert!(duplicate.check().unwrap_err().contains("twice"));

        let mut escaping = minimal();
        escaping.authorities[0].key = Some("../root.key".to_string());
        assert!(escaping.check().unwrap_err().contains("plain file name"));

        let mut orphan_issuer = minimal();
        orphan_issuer.authorities[1].issuer = Some("nobody".to_string());
        assert!(
            orphan_issuer
                .check()
                .unwrap_err()
                .contains("not a live root")
        );

        let mut pending_root = minimal();
        pending_root
            .authorities
            .push(record(AuthorityKind::Root, "r2", AuthorityState::Pending));
        assert!(pending_root.check().is_err());

        let mut version = minimal();
        version.version = 2;
        assert!(version.check().unwrap_err().contains("version 2"));
    }

    #[test]
    fn round_trips_through_json_and_refuses_unknown_fields() {
        let journal = minimal();
        let text = serde_json::to_string(&journal).unwrap();
        assert_eq!(serde_json::from_str::<Journal>(&text).unwrap(), journal);
        assert!(text.contains(r#""kind":"jwt-key""#));
        assert!(text.contains(r#""state":"active""#));
        let extra = text.replacen('{', r#"{"surprise":1,"#, 1);
        assert!(serde_json::from_str::<Journal>(&extra).is_err());
    }

    #[test]
    fn transitions_stamp_their_time() {
        let mut journal = minimal();
        let event = journal
            .transition(
                AuthorityKind::JwtKey,
                "j1",
                AuthorityState::Old,
                42,
                "x".to_string(),
            )
            .unwrap();
        assert_eq!(event.from, Some(AuthorityState::Active));
        assert_eq!(event.to, AuthorityState::Old);
        let record = journal.find(AuthorityKind::JwtKey, "j1").unwrap();
        assert_eq!(record.old_since, Some(42));
        assert_eq!(record.since(), Some(42));
        assert!(
            journal
                .transition(
                    AuthorityKind::JwtKey,
                    "nope",
                    AuthorityState::Old,
                    1,
                    String::new()
                )
                .is_err()
        );
    }

    #[test]
    fn only_the_oldest_retired_records_are_pruned() {
        let mut journal = minimal();
        for n in 0..(MAX_RETIRED_RECORDS + 3) {
            let mut retired = record(
                AuthorityKind::JwtKey,
                &format!("old{n}"),
                AuthorityState::Retired,
            );
            retired.retired_at = Some(1000 - n as i64);
            journal.authorities.push(retired);
        }
        journal.prune_retired();
        assert_eq!(journal.authorities.len(), 3 + MAX_RETIRED_RECORDS);
        // The three retired earliest (highest n) are gone.
        for n in MAX_RETIRED_RECORDS..MAX_RETIRED_RECORDS + 3 {
            assert!(
                journal
                    .find(AuthorityKind::JwtKey, &format!("old{n}"))
                    .is_none()
            );
        }
        assert!(journal.find(AuthorityKind::JwtKey, "old0").is_some());
        assert_eq!(journal.check(), Ok(()));
    }
}
