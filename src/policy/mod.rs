//! Registration entries and the policy that decides what an attested
//! workload may obtain.
//!
//! An [`Entry`] names one identity (a SPIFFE ID) together with its
//! governance: owner, purpose, environment, data class, an expiry date, the
//! audiences it may ask JWT-SVIDs for, the credential kinds and TTLs. The
//! [`EntryIndex`] is the in-process, lock-free snapshot the mint path reads.

mod entry;
mod filter;
pub mod grant;
mod index;
pub mod separation;

pub use entry::{
    ActiveGrant, CredentialKind, Disabled, Entry, EntryBreakglass, EntryError, EntryId, EntrySpec,
    HARD_TTL_CAP, MAX_REVIEW_EVERY, MAX_UNREVIEWED_GRANTS, Review, Selector, TtlPolicy,
    governance_text,
};
pub use filter::EntryFilter;
pub use index::{EntryIndex, IndexLoad};
pub use separation::SeparationError;
