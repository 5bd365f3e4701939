//! Break-glass grants as stored: who asked, who approved, what they widen, how they ended
//! and what they issued (`crate::breakglass` makes and applies them).

use std::fmt;

use mayfly_sdk::SpiffeId;
use mayfly_sdk::jwt::Audience;
use serde::{Deserialize, Serialize};

use super::EntryId;

/// The actor of the records the break-glass sweep writes.
pub const BREAKGLASS_ACTOR: &str = "mayfly-breakglass";
/// Credentials one grant may issue; the next mint under it is refused.
pub const MAX_ISSUED_PER_GRANT: usize = 1000;

/// An operator on the admin socket: the peer's uid, and its user name when the system
/// knows one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// The peer's uid, as the kernel reports it.
    pub uid: u32,
    /// Its user name, if the user database has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Operator {
    /// The operator with uid `uid`, named from the user database.
    pub fn from_uid(uid: u32) -> Self {
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|user| user.name);
        Operator { uid, name }
    }

    /// The audit actor: `admin:uid=1001`, as for every admin call.
    pub fn actor(&self) -> String {
        format!("admin:uid={}", self.uid)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "uid {} ({name})", self.uid),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// Where a grant stands at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantState {
    /// Waiting for a second operator.
    Pending,
    /// Approved and in force.
    Active,
    /// Approved, and its TTL ran out.
    Expired,
    /// Never approved, and its approval window closed.
    Lapsed,
    /// Ended early by an operator.
    Revoked,
}

impl GrantState {
    /// Every state, in the order a listing shows them.
    pub const ALL: [GrantState; 5] = [
        GrantState::Pending,
        GrantState::Active,
        GrantState::Expired,
        GrantState::Lapsed,
        GrantState::Revoked,
    ];

    /// The wire and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Pending => "pending",
            GrantState::Active => "active",
            GrantState::Expired => "expired",
            GrantState::Lapsed => "lapsed",
            GrantState::Revoked => "revoked",
        }
    }

    /// Whether the grant is over.
    pub fn is_ended(self) -> bool {
        !matches!(self, GrantState::Pending | GrantState::Active)
    }
}

impl fmt::Display for GrantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The second operator's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved.
    pub by: Operator,
    /// Unix seconds.
    pub at: i64,
    /// Unix seconds when the grant lapses: `at` plus its TTL.
    pub expires_at: i64,
}

/// How a grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedHow {
    /// Its TTL ran out.
    Expired,
    /// It was never approved.
    Lapsed,
    /// An operator revoked it.
    Revoked,
}

/// The recorded end of a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// Unix seconds.
    pub at: i64,
    /// How.
    pub how: EndedHow,
    /// Who: the revoking operator's actor, or [`BREAKGLASS_ACTOR`].
    pub by: String,
    /// The operator's reason for a revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The post-incident review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantReview {
    /// Who recorded it.
    pub by: Operator,
    /// Unix seconds.
    pub at: i64,
    /// What the review found.
    pub note: String,
}

/// The kind of a credential issued under a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuedKind {
    /// A JWT-SVID, named by its `jti`.
    Jwt,
    /// An X509-SVID, named by its serial.
    X509,
}

/// A credential issued under a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCredential {
    /// JWT or X.509.
    pub kind: IssuedKind,
    /// Its `jti` or serial (lowercase hex).
    pub id: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// One break-glass grant, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRecord {
    /// 16 lowercase hex digits.
    pub id: String,
    /// The entry it widens.
    pub entry_id: EntryId,
    /// The entry's SPIFFE ID when it was asked for.
    pub spiffe_id: SpiffeId,
    /// The entry's owner when it was asked for (whom the alerts name).
    pub owner: String,
    /// The one audience it adds; `None`: it lets the disabled entry mint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
    /// How long it lasts once approved, in seconds.
    pub ttl_seconds: u64,
    /// Why, in the requester's words.
    pub reason: String,
    /// The incident or change ticket.
    pub ticket: String,
    /// Who asked.
    pub requested_by: Operator,
    /// Unix seconds.
    pub requested_at: i64,
    /// Unix seconds after which it lapses unapproved.
    pub approve_by: i64,
    /// The second operator's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// The recorded end; the state can be ended by the clock before this is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
    /// The post-incident review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<GrantReview>,
    /// What it issued, at most [`MAX_ISSUED_PER_GRANT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issued: Vec<IssuedCredential>,
    /// Raised on every change (optimistic concurrency in the store).
    pub revision: u64,
}

impl GrantRecord {
    /// Where it stands at `now`.
    pub fn state(&self, now: i64) -> GrantState {
        if let Some(ended) = &self.ended {
            return match ended.how {
                EndedHow::Expired => GrantState::Expired,
                EndedHow::Lapsed => GrantState::Lapsed,
                EndedHow::Revoked => GrantState::Revoked,
            };
        }
        match &self.approval {
            Some(approval) if now >= approval.expires_at => GrantState::Expired,
            Some(_) => GrantState::Active,
            None if now >= self.approve_by => GrantState::Lapsed,
            None => GrantState::Pending,
        }
    }

    /// What it grants, in words: `audience "x"` or `re-enabling the entry`.
    pub fn scope(&self) -> String {
        match &self.audience {
            Some(audience) => format!("audience {:?}", audience.as_str()),
            None => "re-enabling the disabled entry".to_owned(),
        }
    }

    /// Whether it was ever in force (approved).
    pub fn was_in_force(&self) -> bool {
        self.approval.is_some()
    }

    /// A copy with the revision raised, for an update.
    #[must_use]
    pub fn next(&self) -> GrantRecord {
        let mut next = self.clone();
        next.revision = self.revision.saturating_add(1);
        next
    }
}

/// Checks a grant id: 16 lowercase hex digits.
///
/// # Errors
///
/// A message naming the id.
pub fn parse_grant_id(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.len() == 16
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{:?} is not a grant id (16 lowercase hex digits, as `mayfly breakglass list` shows)",
            value.chars().take(64).collect::<String>()
        ))
    }
}
