//! Registered audiences: who a JWT-SVID may be for, as a resource with an
//! owner, an environment and a data class.
//!
//! An operator registers an audience (`mayfly audience create`) to say who
//! the relying party is and what it may see. The mint path then refuses a
//! JWT-SVID for a registered audience when:
//!
//! - the audience's environment differs from the entry's (a `staging`
//!   workload never gets a token a `prod` service would accept);
//! - the audience's data class ranks above the entry's (its clearance), in
//!   the configured order `[governance] data_classes` (by default
//!   `none < internal < confidential < phi`);
//! - either data class is not in that order: the check fails closed;
//!
//! and, when `[governance] require_registered_audiences` is on, for any
//! audience that is not registered at all.
//!
//! Invariants:
//!
//! - the check ([`check_mint`]) runs on every JWT-SVID mint, a cached token
//!   reused or not, so a registry change applies to the next request;
//! - every replica enforces the same registry: the [`AudienceIndex`] is
//!   loaded from the store at start and kept current from the store's change
//!   feed (`StoreEvent::AudienceUpserted`, `AudienceDeleted` and
//!   `AudiencesReplaced`), like the entry index;
//! - a record is only stored once it is valid: its name is a valid JWT
//!   audience and its data class is in the configured order.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use mayfly_sdk::jwt::Audience;
use serde::{Deserialize, Serialize};

use crate::policy::{Entry, governance_text};

/// The default `[governance] data_classes`, lowest first.
pub const DEFAULT_DATA_CLASSES: [&str; 4] = ["none", "internal", "confidential", "phi"];

/// The most data classes an order may have.
const MAX_DATA_CLASSES: usize = 32;

/// The configured order of data classes, lowest first: an entry's data
/// class is its clearance, an audience's is what it handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataClasses(Vec<String>);

impl Default for DataClasses {
    fn default() -> Self {
        DataClasses(DEFAULT_DATA_CLASSES.map(str::to_owned).to_vec())
    }
}

impl DataClasses {
    /// Checks an order: 1 to 32 distinct labels (lowercase letters, digits,
    /// `-`, `_`), lowest first.
    ///
    /// # Errors
    ///
    /// A message naming the offending value.
    pub fn new(classes: Vec<String>) -> Result<Self, String> {
        if classes.is_empty() || classes.len() > MAX_DATA_CLASSES {
            return Err(format!(
                "needs 1 to {MAX_DATA_CLASSES} data classes, lowest first (e.g. {DEFAULT_DATA_CLASSES:?})"
            ));
        }
        for (i, class) in classes.iter().enumerate() {
            if !is_label(class) {
                return Err(format!(
                    "{class:?} is not a data class: 1-64 lowercase letters, digits, '-' or '_'"
                ));
            }
            if classes[..i].contains(class) {
                return Err(format!("{class:?} is listed twice"));
            }
        }
        Ok(DataClasses(classes))
    }

    /// The rank of `class` (0 is the lowest), or `None` when it is not in
    /// the order.
    pub fn rank(&self, class: &str) -> Option<usize> {
        self.0.iter().position(|c| c == class)
    }

    /// The classes, lowest first.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for DataClasses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" < "))
    }
}

/// What the mint path enforces about audiences (from `[governance]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AudiencePolicy {
    /// The order of data classes.
    pub data_classes: DataClasses,
    /// Whether a JWT-SVID may only be minted for a registered audience.
    pub require_registered: bool,
}

/// A registered audience, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceRecord {
    /// The audience string, exactly as minted into `aud`.
    pub name: Audience,
    /// Who answers for the relying party.
    pub owner: String,
    /// The environment it runs in, e.g. `prod`.
    pub environment: String,
    /// The most sensitive data class it handles.
    pub data_class: String,
    /// What it is; empty when not given.
    #[serde(default)]
    pub description: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Raised by every update (optimistic concurrency).
    pub revision: u64,
}

/// An operator's create or update request; `None` means not given
/// (required on create, unchanged on update).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudienceSpec {
    /// Owner.
    pub owner: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// Data class.
    pub data_class: Option<String>,
    /// Description; `Some("")` clears it.
    pub description: Option<String>,
}

/// Why an operator's audience request was refused. Every variant is the
/// caller's to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudienceError {
    /// A required field was not given.
    #[error("{field} is required")]
    Missing {
        /// The field as the CLI spells it.
        field: &'static str,
    },
    /// A field's value is malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field as the CLI spells it.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The data class is not in the configured order.
    #[error(
        "data class {class:?} is not in [governance] data_classes ({order}); use one of them or add it there"
    )]
    UnknownDataClass {
        /// The class given.
        class: String,
        /// The configured order.
        order: String,
    },
    /// No audience is registered under this name.
    #[error("no audience {name:?} is registered; see `mayfly audience list`")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// An audience is registered under this name already.
    #[error("audience {name:?} is already registered; use `mayfly audience update`")]
    Exists {
        /// The name.
        name: String,
    },
    /// The audience changed since the caller read it.
    #[error(
        "audience {name:?} changed since revision {expected} was read; read it again (`mayfly audience list`)"
    )]
    Stale {
        /// The name.
        name: String,
        /// The revision the caller read.
        expected: u64,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> AudienceError {
    AudienceError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Parses an audience name as given by an operator: the same rules as an
/// entry's audiences.
///
/// # Errors
///
/// [`AudienceError::Invalid`] naming the value.
pub fn parse_name(name: &str) -> Result<Audience, AudienceError> {
    Audience::new(name).map_err(|e| invalid("name", format!("{name:?}: {e}")))
}

impl AudienceSpec {
    /// Builds a new record for `name`, checking every field.
    ///
    /// # Errors
    ///
    /// [`AudienceError`] naming the field.
    pub fn create(
        self,
        name: &str,
        classes: &DataClasses,
        now: i64,
    ) -> Result<AudienceRecord, AudienceError> {
        let name = parse_name(name)?;
        let owner = self
            .owner
            .clone()
            .ok_or(AudienceError::Missing { field: "owner" })?;
        let environment = self.environment.clone().ok_or(AudienceError::Missing {
            field: "environment",
        })?;
        let data_class = self.data_class.clone().ok_or(AudienceError::Missing {
            field: "data-class",
        })?;
        let draft = AudienceRecord {
            name,
            owner,
            environment,
            data_class,
            description: String::new(),
            created_at: now,
            updated_at: now,
            revision: 1,
        };
        let spec = AudienceSpec {
            owner: Some(draft.owner.clone()),
            environment: Some(draft.environment.clone()),
            data_class: Some(draft.data_class.clone()),
            description: self.description,
        };
        spec.apply_to(draft, classes)
    }

    /// Applies the given fields to `current`, raising its revision.
    ///
    /// # Errors
    ///
    /// [`AudienceError`] naming the field.
    pub fn update(
        self,
        current: &AudienceRecord,
        classes: &DataClasses,
        now: i64,
    ) -> Result<AudienceRecord, AudienceError> {
        let mut next = self.apply_to(current.clone(), classes)?;
        next.updated_at = now;
        next.revision = current.revision.saturating_add(1);
        Ok(next)
    }

    fn apply_to(
        self,
        mut record: AudienceRecord,
        classes: &DataClasses,
    ) -> Result<AudienceRecord, AudienceError> {
        if let Some(owner) = self.owner {
            record.owner = governance_text("owner", &owner).map_err(|e| match e {
                crate::policy::EntryError::Missing { .. } => {
                    AudienceError::Missing { field: "owner" }
                }
                other => invalid("owner", other.to_string()),
            })?;
        }
        if let Some(environment) = self.environment {
            record.environment = label("environment", &environment)?;
        }
        if let Some(class) = self.data_class {
            let class = label("data-class", &class)?;
            if classes.rank(&class).is_none() {
                return Err(AudienceError::UnknownDataClass {
                    class,
                    order: classes.to_string(),
                });
            }
            record.data_class = class;
        }
        if let Some(description) = self.description {
            record.description = if description.trim().is_empty() {
                String::new()
            } else {
                governance_text("description", &description)
                    .map_err(|e| invalid("description", e.to_string()))?
            };
        }
        Ok(record)
    }
}

fn is_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn label(field: &'static str, value: &str) -> Result<String, AudienceError> {
    if is_label(value) {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            field,
            format!("{value:?}: 1-64 lowercase letters, digits, '-' or '_' (e.g. prod, phi)"),
        ))
    }
}

/// The registered audiences every mint on this replica checks: lock-free
/// reads of an immutable snapshot, replaced whole by each change.
#[derive(Debug, Default)]
pub struct AudienceIndex {
    current: ArcSwap<BTreeMap<String, Arc<AudienceRecord>>>,
    /// Serialises writers, so no change is lost to a concurrent one.
    writer: Mutex<()>,
}

impl AudienceIndex {
    /// An index over `records`.
    pub fn new(records: impl IntoIterator<Item = AudienceRecord>) -> Self {
        let index = AudienceIndex::default();
        index.replace_all(records);
        index
    }

    /// Replaces every record (at load and on a resync).
    pub fn replace_all(&self, records: impl IntoIterator<Item = AudienceRecord>) {
        let map = records
            .into_iter()
            .map(|r| (r.name.as_str().to_owned(), Arc::new(r)))
            .collect();
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.current.store(Arc::new(map));
    }

    /// Inserts or replaces the record with this name.
    pub fn upsert(&self, record: AudienceRecord) {
        self.update(|map| {
            map.insert(record.name.as_str().to_owned(), Arc::new(record));
        });
    }

    /// Removes the record with this name, if any.
    pub fn remove(&self, name: &str) {
        self.update(|map| {
            map.remove(name);
        });
    }

    fn update(&self, change: impl FnOnce(&mut BTreeMap<String, Arc<AudienceRecord>>)) {
        // The mutex guards no data: a writer that panicked published nothing.
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = BTreeMap::clone(&self.current.load());
        change(&mut next);
        self.current.store(Arc::new(next));
    }

    /// The record registered under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<AudienceRecord>> {
        self.current.load().get(name).cloned()
    }

    /// Whether `name` is a registered audience (for the inventory report).
    pub fn is_registered(&self, name: &str) -> bool {
        self.current.load().contains_key(name)
    }

    /// Of `entry`'s audiences, those that are not registered, in order.
    pub fn unregistered_of(&self, entry: &Entry) -> Vec<String> {
        let current = self.current.load();
        entry
            .audiences
            .iter()
            .filter(|a| !current.contains_key(a.as_str()))
            .map(|a| a.as_str().to_owned())
            .collect()
    }

    /// Every record, in name order.
    pub fn all(&self) -> Vec<Arc<AudienceRecord>> {
        self.current.load().values().cloned().collect()
    }
}

/// Why a JWT-SVID for an audience was refused by the audience registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudienceRefusal {
    /// The audience is registered for another environment.
    #[error(
        "audience {audience:?} is registered for environment {audience_env:?}, but entry {spiffe_id} is in {entry_env:?}"
    )]
    EnvironmentMismatch {
        /// The audience.
        audience: String,
        /// The entry's SPIFFE ID.
        spiffe_id: String,
        /// The entry's environment.
        entry_env: String,
        /// The audience's environment.
        audience_env: String,
    },
    /// The audience handles data above the entry's clearance.
    #[error(
        "audience {audience:?} handles data class {audience_class:?}, above the clearance {entry_class:?} of entry {spiffe_id} (order: {order})"
    )]
    AboveClearance {
        /// The audience.
        audience: String,
        /// The entry's SPIFFE ID.
        spiffe_id: String,
        /// The entry's data class.
        entry_class: String,
        /// The audience's data class.
        audience_class: String,
        /// The configured order.
        order: String,
    },
    /// A data class on either side is not in the order: fail closed.
    #[error(
        "data class {class:?} of {whose} is not in [governance] data_classes ({order}); add it there or fix the record"
    )]
    UnknownDataClass {
        /// `entry <spiffe id>` or `audience "<name>"`.
        whose: String,
        /// The class.
        class: String,
        /// The configured order.
        order: String,
    },
    /// The audience is not registered and the policy requires it.
    #[error(
        "audience {audience:?} is not registered and [governance] require_registered_audiences is on; register it with `mayfly audience create`"
    )]
    Unregistered {
        /// The audience.
        audience: String,
    },
}

/// Whether `entry` may have a JWT-SVID for `audience` under the registry
/// and the policy.
///
/// # Errors
///
/// [`AudienceRefusal`], naming both sides.
pub fn check_mint(
    entry: &Entry,
    audience: &Audience,
    index: &AudienceIndex,
    policy: &AudiencePolicy,
) -> Result<(), AudienceRefusal> {
    match index.get(audience.as_str()) {
        Some(record) => check_against(entry, &record, &policy.data_classes),
        None if policy.require_registered => Err(AudienceRefusal::Unregistered {
            audience: audience.as_str().to_owned(),
        }),
        None => Ok(()),
    }
}

/// Whether `entry` conflicts with a registered audience for certain: every
/// one of its audiences that is registered must pass [`check_mint`]'s
/// checks. Unregistered audiences are not a conflict here (the policy may
/// change before a mint).
///
/// # Errors
///
/// The first [`AudienceRefusal`], in audience order.
pub fn check_entry(
    entry: &Entry,
    index: &AudienceIndex,
    classes: &DataClasses,
) -> Result<(), AudienceRefusal> {
    for audience in &entry.audiences {
        if let Some(record) = index.get(audience.as_str()) {
            check_against(entry, &record, classes)?;
        }
    }
    Ok(())
}

fn check_against(
    entry: &Entry,
    record: &AudienceRecord,
    classes: &DataClasses,
) -> Result<(), AudienceRefusal> {
    let audience = record.name.as_str();
    if record.environment != entry.environment {
        return Err(AudienceRefusal::EnvironmentMismatch {
            audience: audience.to_owned(),
            spiffe_id: entry.spiffe_id.to_string(),
            entry_env: entry.environment.clone(),
            audience_env: record.environment.clone(),
        });
    }
    let unknown = |whose: String, class: &str| AudienceRefusal::UnknownDataClass {
        whose,
        class: class.to_owned(),
        order: classes.to_string(),
    };
    let audience_rank = classes
        .rank(&record.data_class)
        .ok_or_else(|| unknown(format!("audience {audience:?}"), &record.data_class))?;
    let entry_rank = classes
        .rank(&entry.data_class)
        .ok_or_else(|| unknown(format!("entry {}", entry.spiffe_id), &entry.data_class))?;
    if audience_rank > entry_rank {
        return Err(AudienceRefusal::AboveClearance {
            audience: audience.to_owned(),
            spiffe_id: entry.spiffe_id.to_string(),
            entry_class: entry.data_class.clone(),
            audience_class: record.data_class.clone(),
            order: classes.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
