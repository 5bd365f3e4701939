//! Environment separation between agents and the workload entries under
//! them: a test node cannot host a production identity.
//!
//! Invariant: a workload entry (one with a `parent_id`) has the same
//! `environment` as its parent agent's entry (the entry whose `spiffe_id` is
//! that `parent_id`). It is held at three places:
//!
//! - at registration ([`check_registration`]): creating or updating an
//!   entry is refused when its parent agent's entry has another
//!   environment, and creating or updating an agent entry is refused when
//!   workload entries already registered under its SPIFFE ID have another
//!   one. The check runs on create, and on update only when a field it
//!   depends on changes (`environment`, `parent_id`, `spiffe_id`), so that
//!   an unrelated change (an owner, an expiry) of an entry made before this
//!   rule is not blocked; fixing the environment is always allowed.
//! - A workload entry whose parent agent is not registered (yet) is
//!   accepted: agents are often registered after their workloads. The
//!   agent's entry is then checked against it when it is created.
//! - at mint (`crate::mint`), failing closed: an agent obtains a workload's
//!   credential only when its own entry's environment is the workload
//!   entry's, whatever happened between the checks (another replica, a race
//!   between two admin calls, entries made before this rule).

use mayfly_sdk::SpiffeId;

use super::{Entry, EntryId, EntryIndex};

/// At most this many mismatched workload entries are named in an error.
pub const MAX_NAMED: usize = 5;

/// Why an entry cannot be registered as asked: it would put a workload in
/// another environment than its agent. The operator's to fix
/// (FAILED_PRECONDITION: the request is well formed, other entries' state
/// does not allow it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SeparationError {
    /// The entry's environment differs from its parent agent's entry's.
    #[error(
        "entry {entry_id} ({spiffe_id}) has environment {environment:?}, but its parent agent \
         {agent} (entry {agent_entry_id}) has environment {agent_environment:?}; a workload \
         must be in its agent's environment: set --environment {agent_environment} or \
         register it under an agent of {environment:?}"
    )]
    ParentEnvironment {
        /// The workload entry.
        entry_id: EntryId,
        /// Its SPIFFE ID.
        spiffe_id: SpiffeId,
        /// Its environment.
        environment: String,
        /// The parent agent's SPIFFE ID (the entry's `parent_id`).
        agent: SpiffeId,
        /// The parent agent's entry.
        agent_entry_id: EntryId,
        /// The parent agent's environment.
        agent_environment: String,
    },
    /// Workload entries registered under this agent have another
    /// environment than the one the agent's entry would have.
    #[error(
        "agent entry {agent_entry_id} ({agent}) would have environment {environment:?}, but \
         {count} workload entries under it have another: {}; update or move them first",
        named(.examples, *.count)
    )]
    ChildrenEnvironment {
        /// The agent's entry.
        agent_entry_id: EntryId,
        /// Its SPIFFE ID.
        agent: SpiffeId,
        /// The environment it would have.
        environment: String,
        /// How many workload entries under it differ.
        count: usize,
        /// The first few of them (by SPIFFE ID): id, SPIFFE ID, environment.
        examples: Vec<(EntryId, SpiffeId, String)>,
    },
}

fn named(examples: &[(EntryId, SpiffeId, String)], count: usize) -> String {
    let mut text = examples
        .iter()
        .map(|(id, spiffe_id, environment)| format!("{spiffe_id} (entry {id}, {environment:?})"))
        .collect::<Vec<_>>()
        .join(", ");
    if count > examples.len() {
        text.push_str(&format!(" and {} more", count - examples.len()));
    }
    text
}

/// Whether a change from `current` to `next` touches a field the
/// separation rule depends on (always true for a new entry).
pub fn separation_relevant(current: Option<&Entry>, next: &Entry) -> bool {
    current.is_none_or(|current| {
        current.environment != next.environment
            || current.parent_id != next.parent_id
            || current.spiffe_id != next.spiffe_id
    })
}

/// Checks `entry` (about to be created, or the result of an update) against
/// the registered entries in `index`: its parent agent's environment, and
/// the environments of the workload entries registered under it.
///
/// # Errors
///
/// [`SeparationError::ParentEnvironment`] or
/// [`SeparationError::ChildrenEnvironment`] (boxed: the error is rare and
/// large).
pub fn check_registration(entry: &Entry, index: &EntryIndex) -> Result<(), Box<SeparationError>> {
    if let Some(parent) = &entry.parent_id
        && let Some(agent) = index.by_spiffe_id(parent)
        && agent.id != entry.id
        && agent.environment != entry.environment
    {
        return Err(Box::new(SeparationError::ParentEnvironment {
            entry_id: entry.id.clone(),
            spiffe_id: entry.spiffe_id.clone(),
            environment: entry.environment.clone(),
            agent: parent.clone(),
            agent_entry_id: agent.id.clone(),
            agent_environment: agent.environment.clone(),
        }));
    }
    let mismatched: Vec<_> = index
        .children_of(&entry.spiffe_id)
        .into_iter()
        .filter(|child| child.id != entry.id && child.environment != entry.environment)
        .collect();
    if mismatched.is_empty() {
        return Ok(());
    }
    Err(Box::new(SeparationError::ChildrenEnvironment {
        agent_entry_id: entry.id.clone(),
        agent: entry.spiffe_id.clone(),
        environment: entry.environment.clone(),
        count: mismatched.len(),
        examples: mismatched
            .iter()
            .take(MAX_NAMED)
            .map(|child| {
                (
                    child.id.clone(),
                    child.spiffe_id.clone(),
                    child.environment.clone(),
                )
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests;
