//! [`RevocationSet`]: the in-process revocation index.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use super::compact::{Credentials, PARTS, Stamp};
use super::{Revocation, RevocationKind};
use crate::SpiffeId;

/// Why a credential did not pass the revocation check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// A revocation covers it.
    #[error("revoked ({kind} {value}) at {revoked_at}{}", reason_suffix(.reason))]
    Revoked {
        /// The revocation's kind.
        kind: RevocationKind,
        /// Its value.
        value: String,
        /// Unix seconds.
        revoked_at: i64,
        /// The operator's reason; empty for a `jti` or `serial` revocation,
        /// whose reason the index does not keep (it is in the store, the
        /// audit log and `mayfly revoke list`).
        reason: String,
    },
    /// The index has not heard from its source for longer than its bound:
    /// it cannot say whether the credential was revoked since.
    #[error(
        "revocation data is stale: last heard from its source {age_secs} s ago (bound {bound_secs} s); failing closed"
    )]
    Stale {
        /// Seconds since the source was last heard (`i64::MAX` if never).
        age_secs: i64,
        /// The configured bound.
        bound_secs: u64,
    },
}

impl RevocationError {
    fn revoked(revocation: &Revocation) -> Self {
        RevocationError::Revoked {
            kind: revocation.kind,
            value: revocation.value.clone(),
            revoked_at: revocation.revoked_at,
            reason: revocation.reason.clone(),
        }
    }
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl Stamp {
    /// Its reason and actor stay in the store and the audit log.
    fn of(revocation: &Revocation) -> Self {
        Stamp {
            revoked_at: revocation.revoked_at,
            expires_at: revocation.expires_at.unwrap_or(i64::MAX),
        }
    }

    fn is_expired(self, now: i64) -> bool {
        self.expires_at <= now
    }

    fn error(self, kind: RevocationKind, value: &str) -> RevocationError {
        RevocationError::Revoked {
            kind,
            value: value.to_owned(),
            revoked_at: self.revoked_at,
            reason: String::new(),
        }
    }

    /// The revocation back, without the reason and actor it no longer has.
    fn revocation(self, kind: RevocationKind, value: &str) -> Revocation {
        Revocation {
            kind,
            value: value.to_owned(),
            subjects: Vec::new(),
            revoked_at: self.revoked_at,
            expires_at: (self.expires_at != i64::MAX).then_some(self.expires_at),
            reason: String::new(),
            actor: String::new(),
        }
    }
}

/// One change to the set, as [`RevocationSet::subscribe_pages`] delivers it.
#[derive(Debug, Clone)]
pub enum RevocationChange {
    /// The whole set was replaced (a resync): read it from the set. It is
    /// not carried here, where the channel would keep a copy of a million
    /// revocations for as long as the message is retained.
    Full,
    /// Added or replaced.
    Upserted(Arc<Revocation>),
    /// Lifted or expired, by key.
    Removed(String),
}

/// A whole set being received, before it replaces a [`RevocationSet`]
/// ([`RevocationSet::replace_with`]): `jti`s and serials kept as the set
/// keeps them (24 bytes each when they pack), so a follower that takes a
/// million in pages holds them compact, not as a million [`Revocation`]s.
#[derive(Debug)]
pub struct Staged {
    tokens: Credentials,
    serials: Credentials,
    /// Identity revocations, as received: few, and indexed when put in place.
    identities: Vec<Revocation>,
}

impl Staged {
    /// Nothing staged yet.
    pub fn new() -> Self {
        Staged {
            tokens: Credentials::new(RevocationKind::Jti),
            serials: Credentials::new(RevocationKind::Serial),
            identities: Vec::new(),
        }
    }

    /// Adds `revocation` (a later one with the same kind and value replaces
    /// it, as in the set).
    pub fn push(&mut self, revocation: Revocation) {
        let table = match revocation.kind {
            RevocationKind::Jti => &self.tokens,
            RevocationKind::Serial => &self.serials,
            _ => return self.identities.push(revocation),
        };
        table.insert(&revocation.value, Stamp::of(&revocation));
    }

    /// How many are staged (identity revocations with the same key counted
    /// each time).
    pub fn len(&self) -> usize {
        self.tokens.len() + self.serials.len() + self.identities.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Staged {
    fn default() -> Self {
        Self::new()
    }
}

/// The kinds kept packed, in the order [`Pages`] reads them.
const PACKED_KINDS: [RevocationKind; 2] = [RevocationKind::Jti, RevocationKind::Serial];

/// A set's revocations, a page at a time ([`RevocationSet::subscribe_pages`]):
/// the identity revocations (taken at the subscription; they are shared),
/// then each part of the packed `jti` and `serial` tables, read when the
/// page that needs it is taken.
#[derive(Debug)]
pub struct Pages {
    set: Arc<RevocationSet>,
    page: usize,
    /// The identity revocations not yet handed out.
    identities: std::vec::IntoIter<Arc<Revocation>>,
    /// The values and stamps of the part read last, not yet handed out: a
    /// part is kept as read (about 56 bytes a value), and only a page of it
    /// made into revocations at a time.
    values: std::vec::IntoIter<(Box<str>, Stamp)>,
    /// Their kind.
    kind: RevocationKind,
    /// The next part to read, over both packed kinds.
    next_part: usize,
}

impl Iterator for Pages {
    type Item = Vec<Arc<Revocation>>;

    /// The next page: at most `page` revocations, never empty; `None` once
    /// every part was read. A page of `jti`s and serials is filled from as
    /// many parts as it takes, each read when the one before is used up.
    fn next(&mut self) -> Option<Self::Item> {
        if self.identities.len() > 0 {
            return Some(self.identities.by_ref().take(self.page).collect());
        }
        let mut page = Vec::new();
        while page.len() < self.page {
            if self.values.len() == 0 {
                let Some(&kind) = PACKED_KINDS.get(self.next_part / PARTS) else {
                    break;
                };
                let part = self.next_part % PARTS;
                self.next_part += 1;
                let mut read = Vec::new();
                if let Some(map) = self.set.credentials(kind) {
                    map.for_each_in(part, |value, stamp| read.push((Box::from(value), stamp)));
                }
                self.kind = kind;
                self.values = read.into_iter();
                continue;
            }
            let kind = self.kind;
            let room = self.page - page.len();
            page.extend(
                self.values
                    .by_ref()
                    .take(room)
                    .map(|(value, stamp)| Arc::new(stamp.revocation(kind, &value))),
            );
        }
        (!page.is_empty()).then_some(page)
    }
}

type Map = papaya::HashMap<Box<str>, Arc<Revocation>>;
type Covers = papaya::HashMap<Box<str>, Arc<[Arc<Revocation>]>>;

/// `Err` when an unexpired `kind` revocation in `map` names `value`.
fn check_credential(
    map: &Credentials,
    kind: RevocationKind,
    value: &str,
    now: i64,
) -> Result<(), RevocationError> {
    match map.get(value) {
        Some(stamp) if !stamp.is_expired(now) => Err(stamp.error(kind, value)),
        _ => Ok(()),
    }
}

/// The revocation index.
///
/// Identity revocations and the subject index live in lock-free hash maps
/// ([`papaya`]). `jti` and `serial` revocations, the numerous kind, are
/// packed: 24 bytes each in one of 64 sharded tables, a lookup taking one
/// shard's read lock (see `compact.rs`). Writers are serialised by a mutex,
/// so the subject index (SPIFFE ID → identity revocations covering it)
/// stays consistent.
///
/// For `jti` and `serial` revocations the set keeps the value and two
/// times only. What the set gives back for them
/// ([`get`](Self::get), [`snapshot`](Self::snapshot), errors) carries no
/// reason or actor; those are in the store and the audit log.
///
/// The set records when it last heard from its source. With a staleness
/// bound, every check fails closed with [`RevocationError::Stale`] once the
/// source has been silent for longer than the bound.
#[derive(Debug)]
pub struct RevocationSet {
    tokens: Credentials,
    serials: Credentials,
    identities: Map,
    subjects: Covers,
    writer: Mutex<()>,
    changes: broadcast::Sender<RevocationChange>,
    last_heard_ms: AtomicI64,
    bound: Option<Duration>,
}

impl RevocationSet {
    /// An index that is its own source of truth (a single broker on the
    /// embedded store): never stale.
    pub fn authoritative() -> Self {
        Self::build(None)
    }

    /// An index fed by a remote source. Checks fail closed once it has not
    /// heard from the source (see [`mark_heard`](Self::mark_heard)) for
    /// longer than `bound`; until the first word it is stale.
    pub fn following(bound: Duration) -> Self {
        Self::build(Some(bound))
    }

    fn build(bound: Option<Duration>) -> Self {
        let (changes, _) = broadcast::channel(1024);
        RevocationSet {
            tokens: Credentials::new(RevocationKind::Jti),
            serials: Credentials::new(RevocationKind::Serial),
            identities: Map::new(),
            subjects: Covers::new(),
            writer: Mutex::new(()),
            changes,
            last_heard_ms: AtomicI64::new(i64::MIN),
            bound,
        }
    }

    /// The staleness bound, if the set follows a remote source.
    pub fn staleness_bound(&self) -> Option<Duration> {
        self.bound
    }

    /// Records that the source answered at `unix_ms` (never moves back).
    pub fn mark_heard(&self, unix_ms: i64) {
        self.last_heard_ms.fetch_max(unix_ms, Ordering::AcqRel);
    }

    /// When the source last answered, Unix milliseconds; `None` if never.
    /// Always `now` for an authoritative set.
    pub fn last_heard_ms(&self) -> Option<i64> {
        match self.last_heard_ms.load(Ordering::Acquire) {
            i64::MIN => None,
            at => Some(at),
        }
    }

    /// `Ok` if the set is fresh enough at `now_ms` to answer.
    ///
    /// # Errors
    ///
    /// [`RevocationError::Stale`].
    pub fn check_fresh(&self, now_ms: i64) -> Result<(), RevocationError> {
        let Some(bound) = self.bound else {
            return Ok(());
        };
        let bound_ms = i64::try_from(bound.as_millis()).unwrap_or(i64::MAX);
        let age_ms = match self.last_heard_ms() {
            Some(at) => now_ms.saturating_sub(at),
            None => i64::MAX,
        };
        if age_ms > bound_ms {
            return Err(RevocationError::Stale {
                age_secs: if age_ms == i64::MAX {
                    i64::MAX
                } else {
                    age_ms / 1000
                },
                bound_secs: bound.as_secs(),
            });
        }
        Ok(())
    }

    /// Checks a JWT-SVID: freshness, its `jti`, then its subject (covered
    /// when `issued_at` is at or before the revocation, or absent). `now` is
    /// Unix seconds.
    ///
    /// # Errors
    ///
    /// [`RevocationError`].
    pub fn check_jwt(
        &self,
        subject: &SpiffeId,
        jti: Option<&str>,
        issued_at: Option<i64>,
        now: i64,
    ) -> Result<(), RevocationError> {
        self.check_jwt_ms(subject, jti, issued_at, now.saturating_mul(1000))
    }

    /// Like [`check_jwt`](Self::check_jwt), with the clock read in
    /// milliseconds so that freshness is judged finely.
    ///
    /// # Errors
    ///
    /// [`RevocationError`].
    pub fn check_jwt_ms(
        &self,
        subject: &SpiffeId,
        jti: Option<&str>,
        issued_at: Option<i64>,
        now_ms: i64,
    ) -> Result<(), RevocationError> {
        self.check_fresh(now_ms)?;
        self.check_jwt_known(subject, jti, issued_at, now_ms.div_euclid(1000))
    }

    /// Like [`check_jwt`](Self::check_jwt), against every revocation the
    /// set holds whatever its age: for a cache that holds a credential and
    /// must not hand it out again once it is known to be revoked, even
    /// while the source is out of reach. `now` is Unix seconds.
    ///
    /// # Errors
    ///
    /// [`RevocationError::Revoked`].
    pub fn check_jwt_known(
        &self,
        subject: &SpiffeId,
        jti: Option<&str>,
        issued_at: Option<i64>,
        now: i64,
    ) -> Result<(), RevocationError> {
        if let Some(jti) = jti {
            check_credential(&self.tokens, RevocationKind::Jti, jti, now)?;
        }
        self.check_subject(subject, issued_at, now)
    }

    /// Checks an X509-SVID: freshness, its serial (canonical hex, see
    /// [`serial_from_bytes`](super::serial_from_bytes)), then its subject
    /// against `not_before`.
    ///
    /// # Errors
    ///
    /// [`RevocationError`].
    pub fn check_x509(
        &self,
        subject: &SpiffeId,
        serial: &str,
        not_before: i64,
        now: i64,
    ) -> Result<(), RevocationError> {
        self.check_fresh(now.saturating_mul(1000))?;
        self.check_x509_known(subject, serial, not_before, now)
    }

    /// Like [`check_x509`](Self::check_x509), against every revocation the
    /// set holds whatever its age (see [`check_jwt_known`](Self::check_jwt_known)).
    ///
    /// # Errors
    ///
    /// [`RevocationError::Revoked`].
    pub fn check_x509_known(
        &self,
        subject: &SpiffeId,
        serial: &str,
        not_before: i64,
        now: i64,
    ) -> Result<(), RevocationError> {
        check_credential(&self.serials, RevocationKind::Serial, serial, now)?;
        self.check_subject(subject, Some(not_before), now)
    }

    fn check_subject(
        &self,
        subject: &SpiffeId,
        issued_at: Option<i64>,
        now: i64,
    ) -> Result<(), RevocationError> {
        let subjects = self.subjects.pin();
        let Some(covers) = subjects.get(subject.as_str()) else {
            return Ok(());
        };
        for revocation in covers.iter() {
            if revocation.is_expired(now) {
                continue;
            }
            let covered = revocation.blocks_minting()
                || issued_at.is_none_or(|issued| issued <= revocation.revoked_at);
            if covered {
                return Err(RevocationError::revoked(revocation));
            }
        }
        Ok(())
    }

    /// The revocation that stops minting for `subject` now, if any. Does not
    /// look at freshness: minting from a stale index is the caller's call.
    pub fn minting_blocked(&self, subject: &SpiffeId) -> Option<Arc<Revocation>> {
        let subjects = self.subjects.pin();
        subjects
            .get(subject.as_str())?
            .iter()
            .find(|r| r.blocks_minting())
            .cloned()
    }

    /// The revocation with this kind and value, if any (without reason or
    /// actor for a `jti` or `serial`).
    pub fn get(&self, kind: RevocationKind, value: &str) -> Option<Arc<Revocation>> {
        match self.credentials(kind) {
            Some(map) => map
                .get(value)
                .map(|stamp| Arc::new(stamp.revocation(kind, value))),
            None => self
                .identities
                .pin()
                .get(super::key(kind, value).as_str())
                .cloned(),
        }
    }

    /// How many revocations it holds.
    pub fn len(&self) -> usize {
        self.tokens.len() + self.serials.len() + self.identities.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every revocation, in no particular order (`jti` and `serial` ones
    /// without reason or actor).
    pub fn snapshot(&self) -> Vec<Arc<Revocation>> {
        let mut all = Vec::with_capacity(self.len());
        all.extend(self.identities.pin().values().cloned());
        for kind in PACKED_KINDS {
            all.extend(self.of_kind(kind));
        }
        all
    }

    /// Every revocation of `kind`, in no particular order (reads only that
    /// kind's map for `jti` and `serial`).
    pub fn of_kind(&self, kind: RevocationKind) -> Vec<Arc<Revocation>> {
        match self.credentials(kind) {
            Some(map) => {
                let mut all = Vec::with_capacity(map.len());
                map.for_each(|value, stamp| all.push(Arc::new(stamp.revocation(kind, value))));
                all
            }
            None => self
                .identities
                .pin()
                .values()
                .filter(|r| r.kind == kind)
                .cloned()
                .collect(),
        }
    }

    /// A receiver of every change from now on, without the current set
    /// (see [`subscribe_pages`](Self::subscribe_pages) for both).
    pub fn changes(&self) -> broadcast::Receiver<RevocationChange> {
        self.changes.subscribe()
    }

    /// The current set and a receiver of every change after it, taken
    /// together so that nothing falls between them. The set is read a page
    /// of at most `page` revocations at a time, as the pages are taken: what
    /// it holds is never copied whole (a million `jti` revocations would be
    /// a million objects, held for as long as a subscriber reads them).
    ///
    /// The receiver is taken first, so a change made while the pages are
    /// read is in it too: the pages followed by the changes, in order, end
    /// at the set as it is. A revocation held from the subscription to the
    /// last page is in exactly one page; one changed meanwhile may be in a
    /// page or not, and its change follows.
    pub fn subscribe_pages(
        self: &Arc<Self>,
        page: usize,
    ) -> (Pages, broadcast::Receiver<RevocationChange>) {
        let _writer = self.lock();
        (self.pages(page), self.changes.subscribe())
    }

    /// The set a page of at most `page` revocations at a time, read as the
    /// pages are taken (see [`subscribe_pages`](Self::subscribe_pages)).
    pub fn pages(self: &Arc<Self>, page: usize) -> Pages {
        let identities: Vec<_> = self.identities.pin().values().cloned().collect();
        Pages {
            set: Arc::clone(self),
            page: page.max(1),
            identities: identities.into_iter(),
            values: Vec::new().into_iter(),
            kind: RevocationKind::Jti,
            next_part: 0,
        }
    }

    /// Adds or replaces a revocation (by kind and value).
    pub fn upsert(&self, revocation: Revocation) {
        let revocation = Arc::new(revocation);
        let _writer = self.lock();
        self.insert_locked(revocation.clone());
        let _ = self.changes.send(RevocationChange::Upserted(revocation));
    }

    /// Removes the revocation with this kind and value; returns it.
    pub fn remove(&self, kind: RevocationKind, value: &str) -> Option<Arc<Revocation>> {
        let _writer = self.lock();
        let removed = self.remove_locked(kind, value)?;
        let _ = self.changes.send(RevocationChange::Removed(removed.key()));
        Some(removed)
    }

    /// Removes the revocation with this `kind:value` key; returns it.
    pub fn remove_key(&self, key: &str) -> Option<Arc<Revocation>> {
        let (kind, value) = key.split_once(':')?;
        self.remove(kind.parse().ok()?, value)
    }

    /// Replaces the whole set (a resync).
    pub fn replace_all(&self, revocations: impl IntoIterator<Item = Revocation>) {
        let mut staged = Staged::new();
        for revocation in revocations {
            staged.push(revocation);
        }
        self.replace_with(staged);
    }

    /// Replaces the whole set with `staged` (a resync read a page at a time).
    /// The new `jti`s and serials go in a shard at a time, each shard swapped
    /// whole, so a check never finds a shard empty that is being refilled;
    /// the new identity revocations go in before the ones they do not hold
    /// are lifted, so one held in both covers its subjects throughout.
    pub fn replace_with(&self, staged: Staged) {
        let Staged {
            tokens,
            serials,
            identities,
        } = staged;
        let _writer = self.lock();
        self.tokens.take_from(tokens);
        self.serials.take_from(serials);
        let kept: std::collections::HashSet<String> =
            identities.iter().map(Revocation::key).collect();
        for revocation in identities {
            self.insert_locked(Arc::new(revocation));
        }
        let lifted: Vec<(RevocationKind, String)> = self
            .identities
            .pin()
            .values()
            .filter(|revocation| !kept.contains(&revocation.key()))
            .map(|revocation| (revocation.kind, revocation.value.clone()))
            .collect();
        for (kind, value) in lifted {
            self.remove_locked(kind, &value);
        }
        let _ = self.changes.send(RevocationChange::Full);
    }

    /// Drops every revocation that has expired at `now`; returns their keys.
    pub fn prune(&self, now: i64) -> Vec<String> {
        let mut expired: Vec<(RevocationKind, String)> = Vec::new();
        for kind in [RevocationKind::Jti, RevocationKind::Serial] {
            if let Some(map) = self.credentials(kind) {
                map.for_each(|value, stamp| {
                    if stamp.is_expired(now) {
                        expired.push((kind, value.to_owned()));
                    }
                });
            }
        }
        expired.extend(
            self.identities
                .pin()
                .values()
                .filter(|r| r.is_expired(now))
                .map(|r| (r.kind, r.value.clone())),
        );
        expired
            .into_iter()
            .filter_map(|(kind, value)| self.remove(kind, &value).map(|r| r.key()))
            .collect()
    }

    /// The compact map of a credential kind; `None` for identity kinds.
    fn credentials(&self, kind: RevocationKind) -> Option<&Credentials> {
        match kind {
            RevocationKind::Jti => Some(&self.tokens),
            RevocationKind::Serial => Some(&self.serials),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic elsewhere cannot leave it torn.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert_locked(&self, revocation: Arc<Revocation>) {
        if let Some(map) = self.credentials(revocation.kind) {
            map.insert(&revocation.value, Stamp::of(&revocation));
        } else {
            // Identity revocations of different kinds may share a value (an
            // agent revoked as agent and as SPIFFE ID): key by the full key.
            let key: Box<str> = revocation.key().into();
            if let Some(old) = self.identities.pin().insert(key, revocation.clone()) {
                self.uncover(old);
            }
            self.cover(&revocation);
        }
    }

    fn remove_locked(&self, kind: RevocationKind, value: &str) -> Option<Arc<Revocation>> {
        if let Some(map) = self.credentials(kind) {
            let stamp = map.remove(value)?;
            Some(Arc::new(stamp.revocation(kind, value)))
        } else {
            let key = super::key(kind, value);
            let removed = self.identities.pin().remove(key.as_str()).cloned()?;
            self.uncover(&removed);
            Some(removed)
        }
    }

    fn cover(&self, revocation: &Arc<Revocation>) {
        let subjects = self.subjects.pin();
        for subject in &revocation.subjects {
            let mut list: Vec<Arc<Revocation>> = subjects
                .get(subject.as_str())
                .map(|l| {
                    l.iter()
                        .filter(|r| r.key() != revocation.key())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            list.push(revocation.clone());
            subjects.insert(subject.as_str().into(), list.into());
        }
    }

    fn uncover(&self, revocation: &Revocation) {
        let subjects = self.subjects.pin();
        let key = revocation.key();
        for subject in &revocation.subjects {
            let Some(list) = subjects.get(subject.as_str()) else {
                continue;
            };
            let rest: Vec<Arc<Revocation>> =
                list.iter().filter(|r| r.key() != key).cloned().collect();
            if rest.is_empty() {
                subjects.remove(subject.as_str());
            } else {
                subjects.insert(subject.as_str().into(), rest.into());
            }
        }
    }
}

#[cfg(test)]
mod tests;
