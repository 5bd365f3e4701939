//! Paging for the admin API's listings, `ListEntries` and `ListRevocations`:
//! page sizes, the page token, the filters as the wire gives them, and the
//! errors a listing answers with ([`ListError`]).
//!
//! A listing walks its items in key order and stops after a page
//! ([`crate::listing`]); the page token names the last key it looked at.
//! The token is opaque to clients: base64url (no padding) of a small JSON
//! object, `{"v":1,"list":"entries","after":"<key>"}`. It is not secret and
//! not signed: whoever may call the admin API may read every item anyway,
//! and a made-up key only starts the listing elsewhere. What is checked is
//! that it is one: a token that does not decode, has another version,
//! belongs to the other listing or names a key that cannot be one is the
//! caller's mistake, [`PageTokenError`], answered `InvalidArgument`.
//!
//! A request without `page_size` comes from a client that predates paging
//! and reads one response only. It gets every matching item in one
//! response if they fit in [`UNPAGED_LIMIT_BYTES`] (what it got before, for
//! every list it could read before), and otherwise
//! [`ListError::TooLargeUnpaged`]: a refusal that says to page, rather
//! than the first page passed off as the whole list, or a response over
//! gRPC's 4 MiB default that the client cannot decode.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_sdk::SpiffeId;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::revocation::RevocationKind;
use serde::{Deserialize, Serialize};

use crate::governance::EntryState;
use crate::policy::{EntryFilter, EntryId};
use crate::revoke::{RevocationFilter, RevokeError};

/// Items per page when the request says 0.
pub const DEFAULT_PAGE_SIZE: usize = 500;
/// Items per page at most; a larger `page_size` is clamped to it.
pub const MAX_PAGE_SIZE: usize = 5000;
/// Items one call looks at at most, matching the filters or not, before it
/// answers with what it found and a token to go on.
pub const SCAN_BUDGET: usize = 20_000;
/// The largest unpaged response (a request without `page_size`), in
/// encoded bytes: half of gRPC's default 4 MiB limit on a received message.
pub const UNPAGED_LIMIT_BYTES: usize = 2 * 1024 * 1024;
/// The version of the page tokens this server makes.
pub const TOKEN_VERSION: u32 = 1;
/// The longest page token accepted: far more than a key makes.
const MAX_TOKEN_LEN: usize = 4096;

/// Which listing a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `ListEntries`: entries by id.
    Entries,
    /// `ListRevocations`: revocations by `kind:value`.
    Revocations,
}

impl Listing {
    /// The name in tokens and messages: `entries` or `revocations`.
    pub fn as_str(self) -> &'static str {
        match self {
            Listing::Entries => "entries",
            Listing::Revocations => "revocations",
        }
    }

    /// Whether `key` can be a key of this listing.
    fn check_key(self, key: &str) -> Result<(), String> {
        match self {
            Listing::Entries => EntryId::parse(key).map(drop).map_err(|e| e.to_string()),
            Listing::Revocations => {
                let Some((kind, value)) = key.split_once(':') else {
                    return Err("expected kind:value".to_owned());
                };
                kind.parse::<RevocationKind>().map_err(|e| e.to_string())?;
                if value.is_empty() {
                    return Err("the value is empty".to_owned());
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a page token was refused. Every variant is the caller's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageTokenError {
    /// Longer than any token this server makes.
    #[error("page_token is {len} bytes long; this server's tokens are shorter than {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not base64url, or not a token's JSON inside.
    #[error(
        "page_token is not a page token of this server; pass the previous response's next_page_token as it is"
    )]
    Malformed,
    /// A token of another version.
    #[error("page_token has version {found}; this server reads version {TOKEN_VERSION}")]
    Version {
        /// The token's version.
        found: u32,
    },
    /// A token of the other listing.
    #[error("page_token belongs to the {found} listing, not to {expected}")]
    OtherListing {
        /// The listing it was given to.
        expected: Listing,
        /// The listing it names.
        found: String,
    },
    /// The key it names cannot be a key of the listing.
    #[error("page_token names {key:?}, which is not a key of the {listing} listing: {reason}")]
    BadKey {
        /// The listing.
        listing: Listing,
        /// The key.
        key: String,
        /// Why it is not one.
        reason: String,
    },
}

/// What a page token holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    v: u32,
    list: String,
    after: String,
}

/// The token of the page of `listing` that starts after `key`.
pub fn encode_token(listing: Listing, key: &str) -> String {
    let body = TokenBody {
        v: TOKEN_VERSION,
        list: listing.as_str().to_owned(),
        after: key.to_owned(),
    };
    // Three plain fields: serializing them cannot fail.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The key a token of `listing` says to start after.
///
/// # Errors
///
/// [`PageTokenError`] saying what is wrong with it.
pub fn decode_token(listing: Listing, token: &str) -> Result<String, PageTokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(PageTokenError::TooLong {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    let json = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| PageTokenError::Malformed)?;
    let body: TokenBody = serde_json::from_slice(&json).map_err(|_| PageTokenError::Malformed)?;
    if body.v != TOKEN_VERSION {
        return Err(PageTokenError::Version { found: body.v });
    }
    if body.list != listing.as_str() {
        return Err(PageTokenError::OtherListing {
            expected: listing,
            found: body.list,
        });
    }
    listing
        .check_key(&body.after)
        .map_err(|reason| PageTokenError::BadKey {
            listing,
            key: body.after.clone(),
            reason,
        })?;
    Ok(body.after)
}

/// How a request asked to be listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRequest {
    /// No `page_size` and no token (a client from before paging): every
    /// matching item in one response, if it fits.
    Unpaged,
    /// One page.
    Paged {
        /// Items on it at most.
        size: usize,
        /// The key it starts after; `None` for the first page.
        after: Option<String>,
    },
}

impl PageRequest {
    /// Reads a request's `page_size` and `page_token`: a size of 0 is
    /// [`DEFAULT_PAGE_SIZE`], a larger one than [`MAX_PAGE_SIZE`] is clamped
    /// to it; a token without a size gets the default size.
    ///
    /// # Errors
    ///
    /// [`PageTokenError`] for a token that is not one of `listing`'s.
    pub fn parse(
        listing: Listing,
        page_size: Option<u32>,
        page_token: &str,
    ) -> Result<Self, PageTokenError> {
        if page_size.is_none() && page_token.is_empty() {
            return Ok(PageRequest::Unpaged);
        }
        let size = match page_size.unwrap_or(0) {
            0 => DEFAULT_PAGE_SIZE,
            asked => usize::try_from(asked).map_or(MAX_PAGE_SIZE, |n| n.min(MAX_PAGE_SIZE)),
        };
        let after = (!page_token.is_empty())
            .then(|| decode_token(listing, page_token))
            .transpose()?;
        Ok(PageRequest::Paged { size, after })
    }
}

/// Why a listing was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The page token is not one.
    #[error(transparent)]
    PageToken(#[from] PageTokenError),
    /// A filter's value is malformed.
    #[error("filter {field}: {reason}")]
    Filter {
        /// The request field, as the proto names it.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An unpaged request whose answer would not fit one response.
    #[error(
        "the {listing} that match do not fit in one response ({limit_bytes} bytes): \
         set page_size and follow next_page_token (mayfly's CLI does)"
    )]
    TooLargeUnpaged {
        /// The listing.
        listing: Listing,
        /// The limit an unpaged response stays under.
        limit_bytes: usize,
    },
    /// The revocations could not be read.
    #[error(transparent)]
    Revocations(#[from] RevokeError),
}

fn filter_error(field: &'static str, reason: impl fmt::Display) -> ListError {
    ListError::Filter {
        field,
        reason: reason.to_string(),
    }
}

/// `Some(text)` unless it is empty (proto3's unset).
fn given(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn spiffe_id(field: &'static str, text: &str) -> Result<Option<SpiffeId>, ListError> {
    given(text)
        .map(|id| SpiffeId::parse(&id).map_err(|e| filter_error(field, e)))
        .transpose()
}

/// The filters of a `ListEntries` request.
///
/// # Errors
///
/// [`ListError::Filter`] for a SPIFFE ID prefix that does not start with
/// `spiffe://` or a parent that is not a SPIFFE ID.
pub fn entry_filter(request: &pb::ListEntriesRequest) -> Result<EntryFilter, ListError> {
    let spiffe_id_prefix = given(&request.spiffe_id_prefix);
    if let Some(prefix) = &spiffe_id_prefix
        && !prefix.starts_with("spiffe://")
    {
        return Err(filter_error(
            "spiffe_id_prefix",
            format!("{prefix:?} does not start with spiffe://"),
        ));
    }
    Ok(EntryFilter {
        owner: given(&request.owner),
        environment: given(&request.environment),
        data_class: given(&request.data_class),
        spiffe_id_prefix,
        parent_id: spiffe_id("parent_id", &request.parent_id)?,
    })
}

/// The states a `ListEntries` request asks for (any of them); empty: all.
///
/// # Errors
///
/// [`ListError::Filter`] naming the unknown state and every valid one.
pub fn entry_states(request: &pb::ListEntriesRequest) -> Result<Vec<EntryState>, ListError> {
    request
        .states
        .iter()
        .map(|name| EntryState::parse(name).map_err(|e| filter_error("states", e)))
        .collect()
}

/// The filters of a `ListRevocations` request.
///
/// # Errors
///
/// [`ListError::Filter`] for an unknown kind or a subject that is not a
/// SPIFFE ID.
pub fn revocation_filter(
    request: &pb::ListRevocationsRequest,
) -> Result<RevocationFilter, ListError> {
    Ok(RevocationFilter {
        kind: given(&request.kind)
            .map(|kind| kind.parse::<RevocationKind>())
            .transpose()
            .map_err(|e| filter_error("kind", e))?,
        subject: spiffe_id("subject", &request.subject)?,
        actor: given(&request.actor),
        revoked_since: (request.revoked_since != 0).then_some(request.revoked_since),
    })
}

/// The items of an unpaged response, kept under [`UNPAGED_LIMIT_BYTES`].
#[derive(Debug)]
pub struct Unpaged<T> {
    listing: Listing,
    items: Vec<T>,
    bytes: usize,
}

impl<T: prost::Message> Unpaged<T> {
    /// An empty response of `listing`.
    pub fn new(listing: Listing) -> Self {
        Unpaged {
            listing,
            items: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds an item, counting what it costs in the response: its bytes, its
    /// length prefix and the field's tag (one byte, field 1).
    ///
    /// # Errors
    ///
    /// [`ListError::TooLargeUnpaged`] once the response would pass the limit.
    pub fn push(&mut self, item: T) -> Result<(), ListError> {
        let length = item.encoded_len();
        self.bytes = self
            .bytes
            .saturating_add(1 + prost::length_delimiter_len(length) + length);
        if self.bytes > UNPAGED_LIMIT_BYTES {
            return Err(ListError::TooLargeUnpaged {
                listing: self.listing,
                limit_bytes: UNPAGED_LIMIT_BYTES,
            });
        }
        self.items.push(item);
        Ok(())
    }

    /// The items.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

#[cfg(test)]
mod tests;
