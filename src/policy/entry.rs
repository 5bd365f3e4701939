use std::fmt;
use std::time::Duration;

use mayfly_sdk::jwt::Audience;
use mayfly_sdk::{SpiffeId, TrustDomain};
use serde::{Deserialize, Serialize};

/// No credential lives longer than this, whatever the config says.
///
/// The SDK's default JWT-SVID lifetime limit, so that validators that cannot
/// know this broker's config (the agent, the SDK's `JwtVerifier`) accept
/// every token it can mint and nothing longer-lived. Defined there because
/// the SDK does not depend on the broker.
pub const HARD_TTL_CAP: Duration = mayfly_sdk::jwt::MAX_JWT_SVID_LIFETIME;

const MAX_TEXT: usize = 1024;
const MAX_LIST: usize = 64;
const DEFAULT_ENTRY_LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// Why an operator's entry was refused. Every variant is the caller's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// A required field was not given.
    #[error("{field} is required")]
    Missing {
        /// The field's name as the CLI spells it.
        field: &'static str,
    },
    /// A field's value is malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field's name as the CLI spells it.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A TTL above the configured cap.
    #[error("{field} of {asked}s is longer than the maximum of {max}s")]
    TtlTooLong {
        /// Which TTL.
        field: &'static str,
        /// What was asked, in seconds.
        asked: u64,
        /// The cap, in seconds.
        max: u64,
    },
    /// The entry is not in the state the operation needs (enabling an
    /// entry that is not disabled, disabling one that is).
    #[error("{reason}")]
    State {
        /// What the state is, naming the entry.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> EntryError {
    EntryError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// An entry's identifier: 16 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntryId(String);

impl EntryId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 8];
        // The system RNG failing is not something the broker can run without.
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(&mut bytes).expect("system random number generator failed");
        EntryId(hex::encode(bytes))
    }

    /// Parses an id as an operator typed it.
    pub fn parse(value: &str) -> Result<Self, EntryError> {
        if value.len() == 16
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(EntryId(value.to_owned()))
        } else {
            Err(invalid("entry id", "expected 16 lowercase hex characters"))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EntryId {
    type Error = EntryError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        EntryId::parse(&value)
    }
}

impl From<EntryId> for String {
    fn from(id: EntryId) -> Self {
        id.0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub use mayfly_sdk::selector::{Selector, SelectorError};

impl From<SelectorError> for EntryError {
    fn from(error: SelectorError) -> Self {
        invalid("selector", error.to_string())
    }
}

/// What kind of credential an entry may be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// JWT-SVIDs.
    Jwt,
    /// X509-SVIDs.
    X509,
}

impl CredentialKind {
    /// Parses `jwt` or `x509`.
    pub fn parse(value: &str) -> Result<Self, EntryError> {
        match value {
            "jwt" => Ok(CredentialKind::Jwt),
            "x509" => Ok(CredentialKind::X509),
            other => Err(invalid(
                "kind",
                format!("{other:?} is not one of jwt, x509"),
            )),
        }
    }

    /// `jwt` or `x509`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Jwt => "jwt",
            CredentialKind::X509 => "x509",
        }
    }
}

/// The TTL defaults and caps from the server config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    /// JWT-SVID TTL for entries that do not set one.
    pub jwt_default: Duration,
    /// X509-SVID TTL for entries that do not set one.
    pub x509_default: Duration,
    /// The longest JWT-SVID TTL an entry may set (at most [`HARD_TTL_CAP`]).
    pub jwt_max: Duration,
    /// The longest X509-SVID TTL an entry may set (at most [`HARD_TTL_CAP`]).
    pub x509_max: Duration,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        TtlPolicy {
            jwt_default: Duration::from_secs(5 * 60),
            x509_default: Duration::from_secs(15 * 60),
            jwt_max: HARD_TTL_CAP,
            x509_max: HARD_TTL_CAP,
        }
    }
}

/// A registered identity and its governance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Stable id.
    pub id: EntryId,
    /// The one identity this entry issues.
    pub spiffe_id: SpiffeId,
    /// What a workload must prove; all must match.
    pub selectors: Vec<Selector>,
    /// The only audiences JWT-SVIDs may be minted for.
    pub audiences: Vec<Audience>,
    /// Which credential kinds may be issued.
    pub kinds: Vec<CredentialKind>,
    /// JWT-SVID lifetime, seconds.
    pub jwt_ttl_seconds: u32,
    /// X509-SVID lifetime, seconds.
    pub x509_ttl_seconds: u32,
    /// DNS SANs added to X509-SVIDs.
    pub dns_names: Vec<String>,
    /// Who answers for this identity.
    pub owner: String,
    /// Why it exists.
    pub purpose: String,
    /// prod, staging, test, ...
    pub environment: String,
    /// phi, pii, none, ...
    pub data_class: String,
    /// Unix seconds after which the entry mints nothing.
    pub expires_at: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Incremented on every update.
    pub revision: u64,
    /// The agent this entry is registered under (its SPIFFE ID): only that
    /// agent may obtain this identity on behalf of local workloads. `None`
    /// for identities workloads obtain from the broker directly.
    #[serde(default)]
    pub parent_id: Option<SpiffeId>,
    /// Whether every JWT-SVID must be freshly signed with its own `jti`, for
    /// relying parties that reject a `jti` they have seen. When false (the
    /// default), the broker hands out the same token for the same audience
    /// until half its lifetime has passed.
    #[serde(default)]
    pub unique_jti: bool,
    /// Set while an operator (or the governance sweeper) has disabled the
    /// entry: it mints nothing until enabled again. Boxed: rare, and the
    /// store's change events carry whole entries.
    #[serde(default)]
    pub disabled: Option<Box<Disabled>>,
    /// How often its owner must review it, in seconds; `None`: the
    /// server's `[governance] review_every`; 0: never.
    #[serde(default)]
    pub review_every_seconds: Option<u64>,
    /// The last owner review; until the first, reviews count from
    /// `created_at`. Boxed like `disabled`.
    #[serde(default)]
    pub last_review: Option<Box<Review>>,
    /// Break-glass: the grant in force, and grants that ended without
    /// their post-incident review (`crate::breakglass`). Boxed: rare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakglass: Option<Box<EntryBreakglass>>,
}

/// What break-glass leaves on an entry, so that every replica's mint path
/// and the inventory see it with the entry itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBreakglass {
    /// The approved grant, until it ends; it is in force until its
    /// `expires_at` whether or not its end has been recorded yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveGrant>,
    /// Grants that were in force and ended without a post-incident review,
    /// newest last, at most [`MAX_UNREVIEWED_GRANTS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreviewed: Vec<String>,
}

/// How many unreviewed grant ids an entry keeps (the grants themselves are
/// all in the store).
pub const MAX_UNREVIEWED_GRANTS: usize = 32;

/// An approved break-glass grant as the mint path applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveGrant {
    /// The grant's id.
    pub grant_id: String,
    /// The one audience it adds; `None`: it lets the disabled entry mint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
    /// Unix seconds when it lapses; no credential issued under it lives longer.
    pub expires_at: i64,
}

impl ActiveGrant {
    /// Whether it is in force at `now`.
    pub fn in_force(&self, now: i64) -> bool {
        now < self.expires_at
    }
}

/// An owner's review of an entry: who, when, and what they said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Unix seconds.
    pub at: i64,
    /// The admin peer that recorded it.
    pub by: String,
    /// The reviewer's note (required).
    pub note: String,
}

/// The longest review interval an entry may set: ten years.
pub const MAX_REVIEW_EVERY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Who disabled an entry, when and why: kept on the entry so that every
/// refusal can name it, and the way back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    /// Unix seconds.
    pub at: i64,
    /// The admin peer, or `mayfly-governance` for the sweeper.
    pub by: String,
    /// Why, in the operator's words (or the rule and dates that applied).
    pub reason: String,
}

impl Entry {
    /// Whether the entry may issue `kind`.
    pub fn allows_kind(&self, kind: CredentialKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// Whether JWT-SVIDs may be minted for `audience`.
    pub fn allows_audience(&self, audience: &Audience) -> bool {
        self.audiences.iter().any(|allowed| allowed == audience)
    }

    /// Whether the entry's own expiry date has passed.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }

    /// This entry, disabled at `now` by `by` for `reason` (checked with
    /// [`governance_text`]), as the next revision.
    ///
    /// # Errors
    ///
    /// [`EntryError::Missing`] or [`EntryError::Invalid`] for the reason;
    /// [`EntryError::State`] if the entry is already disabled.
    pub fn disabled(&self, by: &str, reason: &str, now: i64) -> Result<Entry, EntryError> {
        let reason = governance_text("reason", reason)?;
        if let Some(disabled) = &self.disabled {
            return Err(EntryError::State {
                reason: format!(
                    "entry {} is already disabled since {} by {}",
                    self.id,
                    crate::clock::rfc3339(disabled.at),
                    disabled.by
                ),
            });
        }
        let mut next = self.next_revision(now);
        next.disabled = Some(Box::new(Disabled {
            at: now,
            by: by.to_owned(),
            reason,
        }));
        Ok(next)
    }

    /// This entry, enabled again at `now`, as the next revision; `reason`
    /// is checked like [`Entry::disabled`]'s but kept only in the audit log.
    ///
    /// # Errors
    ///
    /// [`EntryError::Missing`] or [`EntryError::Invalid`] for the reason;
    /// [`EntryError::State`] if the entry is not disabled.
    pub fn enabled(&self, reason: &str, now: i64) -> Result<Entry, EntryError> {
        governance_text("reason", reason)?;
        if self.disabled.is_none() {
            return Err(EntryError::State {
                reason: format!("entry {} is not disabled", self.id),
            });
        }
        let mut next = self.next_revision(now);
        next.disabled = None;
        Ok(next)
    }

    /// This entry with an owner review recorded at `now` by `by`, as the
    /// next revision.
    ///
    /// # Errors
    ///
    /// [`EntryError::Missing`] or [`EntryError::Invalid`] for the note.
    pub fn reviewed(&self, by: &str, note: &str, now: i64) -> Result<Entry, EntryError> {
        let note = governance_text("note", note)?;
        let mut next = self.next_revision(now);
        next.last_review = Some(Box::new(Review {
            at: now,
            by: by.to_owned(),
            note,
        }));
        Ok(next)
    }

    /// The break-glass grant in force at `now`, if any.
    pub fn grant_in_force(&self, now: i64) -> Option<&ActiveGrant> {
        self.breakglass
            .as_ref()
            .and_then(|b| b.active.as_ref())
            .filter(|grant| grant.in_force(now))
    }

    /// Break-glass grants that ended without a post-incident review.
    pub fn unreviewed_grants(&self) -> &[String] {
        self.breakglass
            .as_ref()
            .map_or(&[][..], |b| b.unreviewed.as_slice())
    }

    /// This entry with `grant` in force, as the next revision.
    #[must_use]
    pub fn with_grant(&self, grant: ActiveGrant, now: i64) -> Entry {
        let mut next = self.next_revision(now);
        next.breakglass.get_or_insert_with(Box::default).active = Some(grant);
        next
    }

    /// This entry without grant `grant_id` in force (if it was), as the
    /// next revision; with `needs_review`, the grant is listed as awaiting
    /// its post-incident review. `None` when there is nothing to change.
    #[must_use]
    pub fn grant_ended(&self, grant_id: &str, needs_review: bool, now: i64) -> Option<Entry> {
        let current = self.breakglass.as_deref().cloned().unwrap_or_default();
        let was_active = current
            .active
            .as_ref()
            .is_some_and(|active| active.grant_id == grant_id);
        let listed = current.unreviewed.iter().any(|id| id == grant_id);
        if !was_active && (listed || !needs_review) {
            return None;
        }
        let mut state = current;
        if was_active {
            state.active = None;
        }
        if needs_review && !listed {
            state.unreviewed.push(grant_id.to_owned());
            let excess = state.unreviewed.len().saturating_sub(MAX_UNREVIEWED_GRANTS);
            state.unreviewed.drain(..excess);
        }
        let mut next = self.next_revision(now);
        next.breakglass = (state != EntryBreakglass::default()).then(|| Box::new(state));
        Some(next)
    }

    /// This entry with grant `grant_id` reviewed (no longer listed as
    /// awaiting review), as the next revision; `None` if it was not listed.
    #[must_use]
    pub fn grant_reviewed(&self, grant_id: &str, now: i64) -> Option<Entry> {
        let mut state = self.breakglass.as_deref().cloned()?;
        let before = state.unreviewed.len();
        state.unreviewed.retain(|id| id != grant_id);
        if state.unreviewed.len() == before {
            return None;
        }
        let mut next = self.next_revision(now);
        next.breakglass = (state != EntryBreakglass::default()).then(|| Box::new(state));
        Some(next)
    }

    /// How often this entry must be reviewed, in seconds: its own interval,
    /// else `default`; 0 means never.
    pub fn review_interval(&self, default: Duration) -> u64 {
        self.review_every_seconds.unwrap_or(default.as_secs())
    }

    /// When the next owner review is due (Unix seconds): the last review
    /// (or the creation) plus the interval; `None` when reviews are off.
    pub fn review_due_at(&self, default: Duration) -> Option<i64> {
        let interval = self.review_interval(default);
        if interval == 0 {
            return None;
        }
        let since = self.last_review.as_ref().map_or(self.created_at, |r| r.at);
        Some(since.saturating_add(i64::try_from(interval).unwrap_or(i64::MAX)))
    }

    /// A copy with the revision bumped and `updated_at` = `now`, for the
    /// optimistic concurrency of the store.
    fn next_revision(&self, now: i64) -> Entry {
        let mut next = self.clone();
        next.updated_at = now;
        next.revision = self.revision.saturating_add(1);
        next
    }
}

/// Checks a governance text (a disable or enable reason, a review note):
/// required, trimmed, at most 1024 bytes, no control characters.
///
/// # Errors
///
/// [`EntryError::Missing`] when empty, [`EntryError::Invalid`] when too
/// long or holding control characters; both name `field`.
pub fn governance_text(field: &'static str, value: &str) -> Result<String, EntryError> {
    parse_text(field, value)
}

/// An operator's create or update request, already decoded from the wire.
/// `None` means "not given": a default on create, unchanged on update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntrySpec {
    /// SPIFFE ID text.
    pub spiffe_id: Option<String>,
    /// Selector texts.
    pub selectors: Option<Vec<String>>,
    /// Audience texts.
    pub audiences: Option<Vec<String>>,
    /// `jwt` / `x509`.
    pub kinds: Option<Vec<String>>,
    /// Seconds.
    pub jwt_ttl_seconds: Option<u32>,
    /// Seconds.
    pub x509_ttl_seconds: Option<u32>,
    /// DNS names.
    pub dns_names: Option<Vec<String>>,
    /// Owner (required on create).
    pub owner: Option<String>,
    /// Purpose (required on create).
    pub purpose: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// Data class.
    pub data_class: Option<String>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// The parent agent's SPIFFE ID; `Some("")` clears it.
    pub parent_id: Option<String>,
    /// Whether every JWT-SVID gets its own `jti` (no reuse).
    pub unique_jti: Option<bool>,
    /// Seconds between owner reviews; 0: never.
    pub review_every_seconds: Option<u64>,
}

impl EntrySpec {
    /// Builds a new entry, applying defaults and checking every field.
    pub fn create(
        self,
        trust_domain: &TrustDomain,
        ttl: &TtlPolicy,
        now: i64,
    ) -> Result<Entry, EntryError> {
        let spiffe_id = self
            .spiffe_id
            .clone()
            .ok_or(EntryError::Missing { field: "spiffe-id" })?;
        let draft = Entry {
            id: EntryId::generate(),
            spiffe_id: parse_spiffe_id(&spiffe_id, trust_domain)?,
            selectors: Vec::new(),
            audiences: Vec::new(),
            kinds: vec![CredentialKind::Jwt, CredentialKind::X509],
            jwt_ttl_seconds: secs(ttl.jwt_default),
            x509_ttl_seconds: secs(ttl.x509_default),
            dns_names: Vec::new(),
            owner: String::new(),
            purpose: String::new(),
            environment: "prod".to_owned(),
            data_class: "none".to_owned(),
            expires_at: now.saturating_add(secs(DEFAULT_ENTRY_LIFETIME).into()),
            created_at: now,
            updated_at: now,
            revision: 1,
            parent_id: None,
            unique_jti: false,
            disabled: None,
            review_every_seconds: None,
            last_review: None,
            breakglass: None,
        };
        let entry = self.apply_to(draft, trust_domain, ttl, now)?;
        Ok(entry)
    }

    /// Applies the given fields to `current`, checking the result as a whole.
    pub fn update(
        self,
        current: &Entry,
        trust_domain: &TrustDomain,
        ttl: &TtlPolicy,
        now: i64,
    ) -> Result<Entry, EntryError> {
        let mut entry = self.apply_to(current.clone(), trust_domain, ttl, now)?;
        entry.updated_at = now;
        entry.revision = current.revision + 1;
        Ok(entry)
    }

    fn apply_to(
        self,
        mut entry: Entry,
        trust_domain: &TrustDomain,
        ttl: &TtlPolicy,
        now: i64,
    ) -> Result<Entry, EntryError> {
        if let Some(id) = self.spiffe_id {
            entry.spiffe_id = parse_spiffe_id(&id, trust_domain)?;
        }
        if let Some(selectors) = self.selectors {
            entry.selectors = parse_list("selector", &selectors, |text| {
                Selector::parse(text).map_err(EntryError::from)
            })?;
        }
        if let Some(audiences) = self.audiences {
            entry.audiences = parse_list("audience", &audiences, |a| {
                Audience::new(a).map_err(|e| invalid("audience", e.to_string()))
            })?;
        }
        if let Some(kinds) = self.kinds {
            entry.kinds = parse_list("kind", &kinds, CredentialKind::parse)?;
        }
        if let Some(seconds) = self.jwt_ttl_seconds {
            entry.jwt_ttl_seconds = check_ttl("jwt-ttl", seconds, ttl.jwt_max)?;
        }
        if let Some(seconds) = self.x509_ttl_seconds {
            entry.x509_ttl_seconds = check_ttl("x509-ttl", seconds, ttl.x509_max)?;
        }
        if let Some(names) = self.dns_names {
            entry.dns_names = parse_list("dns-name", &names, parse_dns_name)?;
        }
        if let Some(owner) = self.owner {
            entry.owner = parse_text("owner", &owner)?;
        }
        if let Some(purpose) = self.purpose {
            entry.purpose = parse_text("purpose", &purpose)?;
        }
        if let Some(environment) = self.environment {
            entry.environment = parse_label("environment", &environment)?;
        }
        if let Some(data_class) = self.data_class {
            entry.data_class = parse_label("data-class", &data_class)?;
        }
        if let Some(parent) = self.parent_id {
            entry.parent_id = if parent.is_empty() {
                None
            } else {
                Some(parse_spiffe_id(&parent, trust_domain).map_err(|e| match e {
                    EntryError::Invalid { reason, .. } => invalid("parent", reason),
                    other => other,
                })?)
            };
        }
        if let Some(unique_jti) = self.unique_jti {
            entry.unique_jti = unique_jti;
        }
        if let Some(seconds) = self.review_every_seconds {
            if seconds > MAX_REVIEW_EVERY.as_secs() {
                return Err(EntryError::TtlTooLong {
                    field: "review-every",
                    asked: seconds,
                    max: MAX_REVIEW_EVERY.as_secs(),
                });
            }
            entry.review_every_seconds = Some(seconds);
        }
        if let Some(expires_at) = self.expires_at {
            if expires_at <= now {
                return Err(invalid("expires", "must be in the future"));
            }
            entry.expires_at = expires_at;
        }
        check_whole(&entry)?;
        Ok(entry)
    }
}

fn check_whole(entry: &Entry) -> Result<(), EntryError> {
    if entry.owner.is_empty() {
        return Err(EntryError::Missing { field: "owner" });
    }
    if entry.purpose.is_empty() {
        return Err(EntryError::Missing { field: "purpose" });
    }
    if entry.kinds.is_empty() {
        return Err(invalid("kind", "at least one of jwt, x509 is required"));
    }
    if entry.allows_kind(CredentialKind::Jwt) && entry.audiences.is_empty() {
        return Err(invalid(
            "audience",
            "an entry that issues JWT-SVIDs needs at least one allowed audience",
        ));
    }
    if entry.spiffe_id.path().is_empty() {
        return Err(invalid(
            "spiffe-id",
            "a workload identity needs a path (spiffe://<trust domain>/<path>)",
        ));
    }
    if entry.parent_id.as_ref() == Some(&entry.spiffe_id) {
        return Err(invalid("parent", "an entry cannot be its own parent"));
    }
    if entry.spiffe_id.path().starts_with("/mayfly/") || entry.spiffe_id.path() == "/mayfly" {
        return Err(invalid(
            "spiffe-id",
            "the /mayfly path is reserved for the broker itself",
        ));
    }
    Ok(())
}

fn secs(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
}

fn parse_spiffe_id(text: &str, trust_domain: &TrustDomain) -> Result<SpiffeId, EntryError> {
    let id = SpiffeId::parse(text).map_err(|e| invalid("spiffe-id", e.to_string()))?;
    if !id.is_member_of(trust_domain) {
        return Err(invalid(
            "spiffe-id",
            format!("{id} is not in this server's trust domain {trust_domain}"),
        ));
    }
    Ok(id)
}

fn parse_list<T: Ord>(
    field: &'static str,
    values: &[String],
    parse: impl Fn(&str) -> Result<T, EntryError>,
) -> Result<Vec<T>, EntryError> {
    if values.len() > MAX_LIST {
        return Err(invalid(field, format!("at most {MAX_LIST} values")));
    }
    let mut parsed = values
        .iter()
        .map(|v| parse(v))
        .collect::<Result<Vec<T>, _>>()?;
    parsed.sort();
    parsed.dedup();
    Ok(parsed)
}

fn check_ttl(field: &'static str, seconds: u32, max: Duration) -> Result<u32, EntryError> {
    let max = max.min(HARD_TTL_CAP);
    if seconds == 0 {
        return Err(invalid(field, "must be at least 1 second"));
    }
    if u64::from(seconds) > max.as_secs() {
        return Err(EntryError::TtlTooLong {
            field,
            asked: seconds.into(),
            max: max.as_secs(),
        });
    }
    Ok(seconds)
}

fn parse_text(field: &'static str, value: &str) -> Result<String, EntryError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(EntryError::Missing { field });
    }
    if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("at most {MAX_TEXT} bytes of text without control characters"),
        ));
    }
    Ok(value.to_owned())
}

fn parse_label(field: &'static str, value: &str) -> Result<String, EntryError> {
    if value.is_empty()
        || value.len() > 64
        || !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            field,
            "1-64 lowercase letters, digits, '-' or '_' (e.g. prod, staging, phi, none)",
        ));
    }
    Ok(value.to_owned())
}

fn parse_dns_name(value: &str) -> Result<String, EntryError> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && value.split('.').enumerate().all(|(i, label)| {
            (label == "*" && i == 0)
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        });
    if valid {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            "dns-name",
            format!("{value:?} is not a lowercase DNS name"),
        ))
    }
}

#[cfg(test)]
mod tests;
