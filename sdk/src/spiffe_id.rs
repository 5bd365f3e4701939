//! SPIFFE IDs and trust domain names, parsed strictly by SPIFFE-ID.md §2.
//!
//! A [`SpiffeId`] is `spiffe://<trust domain>[/<path>]`. Parsing is strict on
//! purpose: the scheme must be the lowercase `spiffe://`; the trust domain may
//! hold only `a-z 0-9 . - _` (so no uppercase, port, userinfo or
//! percent-encoding) and is at most 255 bytes; path segments may hold only
//! `a-z A-Z 0-9 . - _`, and may not be empty, `.` or `..`; there is no
//! trailing `/`, query or fragment; and the whole ID is at most 2048 bytes.
//!
//! Holding a [`SpiffeId`] or a [`TrustDomain`] means it passed these checks:
//! the only ways to build one go through them, including deserialization.
//!
//! ```
//! use mayfly_sdk::{SpiffeId, TrustDomain};
//!
//! let td = TrustDomain::new("example.org")?;
//! let id = SpiffeId::new(&td, "/ns/billing/sa/api")?;
//! assert_eq!(id.as_str(), "spiffe://example.org/ns/billing/sa/api");
//! assert!(id.is_member_of(&td));
//! assert!(SpiffeId::parse("spiffe://example.org/a/../b").is_err());
//! # Ok::<(), mayfly_sdk::SpiffeIdError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The scheme and separator every SPIFFE ID starts with.
const SCHEME_PREFIX: &str = "spiffe://";

/// The longest SPIFFE ID accepted, in bytes (SPIFFE-ID.md §2.3).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// The longest trust domain name accepted, in bytes (SPIFFE-ID.md §2.3).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a string is not a valid SPIFFE ID or trust domain name.
///
/// Positions are byte offsets into the string that was checked (for
/// [`SpiffeId::new`], into the ID it would have built).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// The input is the empty string.
    #[error("SPIFFE ID or trust domain is empty")]
    Empty,

    /// The input does not start with the lowercase scheme `spiffe://`.
    #[error("a SPIFFE ID must start with the lowercase scheme \"spiffe://\"")]
    WrongScheme,

    /// Nothing between `spiffe://` and the path.
    #[error("the SPIFFE ID has no trust domain after \"spiffe://\"")]
    MissingTrustDomain,

    /// The trust domain has a character outside `a-z 0-9 . - _`.
    #[error(
        "invalid character {ch:?} at byte {position} in the trust domain; \
         trust domain names may contain only lowercase letters, digits, '.', '-' and '_'{}",
        if ch.is_ascii_uppercase() { " (uppercase is not allowed)" } else { "" }
    )]
    BadTrustDomainChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        position: usize,
    },

    /// The trust domain is longer than 255 bytes.
    #[error("the trust domain is {len} bytes long; the maximum is {max}")]
    TrustDomainTooLong {
        /// Its length in bytes.
        len: usize,
        /// The maximum, [`MAX_TRUST_DOMAIN_LEN`].
        max: usize,
    },

    /// The authority has a port (`:`), which SPIFFE IDs must not have.
    #[error("the trust domain has a port (':' at byte {position}); SPIFFE IDs must not have one")]
    TrustDomainHasPort {
        /// Byte offset of the `:`.
        position: usize,
    },

    /// The authority has userinfo (`user@`), which SPIFFE IDs must not have.
    #[error("the trust domain has userinfo ('@' at byte {position}); SPIFFE IDs must not have any")]
    TrustDomainHasUserinfo {
        /// Byte offset of the `@`.
        position: usize,
    },

    /// A trust domain was given as `spiffe://name/path`; a trust domain has no path.
    #[error("a trust domain has no path, but one was given (starting at byte {position})")]
    TrustDomainHasPath {
        /// Byte offset of the path's first `/`.
        position: usize,
    },

    /// The path has an empty segment (`//`).
    #[error("empty path segment ('//') at byte {position}")]
    EmptySegment {
        /// Byte offset of the second `/`.
        position: usize,
    },

    /// The path has a `.` or `..` segment.
    #[error("path segment {segment:?} at byte {position}; '.' and '..' segments are not allowed")]
    DotSegment {
        /// The segment, `.` or `..`.
        segment: &'static str,
        /// Byte offset of the segment.
        position: usize,
    },

    /// The path ends with `/`.
    #[error("the path ends with '/'; SPIFFE IDs must not have a trailing slash")]
    TrailingSlash,

    /// A path given to [`SpiffeId::new`] is neither empty nor starts with `/`.
    #[error("a path must be empty or start with '/'")]
    RelativePath,

    /// A path segment has a character outside `a-z A-Z 0-9 . - _`.
    #[error(
        "invalid character {ch:?} at byte {position} in the path; \
         path segments may contain only letters, digits, '.', '-' and '_'"
    )]
    BadPathChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        position: usize,
    },

    /// The input has a `%`: SPIFFE IDs must not be percent-encoded.
    #[error("percent-encoding ('%' at byte {position}) is not allowed in a SPIFFE ID")]
    PercentEncoded {
        /// Byte offset of the `%`.
        position: usize,
    },

    /// The input has a query (`?`).
    #[error("a SPIFFE ID must not have a query ('?' at byte {position})")]
    HasQuery {
        /// Byte offset of the `?`.
        position: usize,
    },

    /// The input has a fragment (`#`).
    #[error("a SPIFFE ID must not have a fragment ('#' at byte {position})")]
    HasFragment {
        /// Byte offset of the `#`.
        position: usize,
    },

    /// The whole ID is longer than 2048 bytes.
    #[error("the SPIFFE ID is {len} bytes long; the maximum is {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The maximum, [`MAX_SPIFFE_ID_LEN`].
        max: usize,
    },
}

/// A SPIFFE trust domain name, such as `example.org`.
///
/// Holds only `a-z 0-9 . - _`, is not empty, and is at most 255 bytes.
/// Serializes as the bare name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a trust domain name, given bare (`example.org`) or as a SPIFFE
    /// ID without a path (`spiffe://example.org`).
    ///
    /// # Errors
    ///
    /// A [`SpiffeIdError`] saying what is wrong: empty, bad character
    /// (uppercase, port, userinfo, percent-encoding …), too long, or a path
    /// given with the `spiffe://` form.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if name.starts_with(SCHEME_PREFIX) {
            let id = SpiffeId::parse(name)?;
            if !id.path().is_empty() {
                return Err(SpiffeIdError::TrustDomainHasPath {
                    position: id.td_end,
                });
            }
            return Ok(id.trust_domain());
        }
        if name.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if name.contains("://") {
            return Err(SpiffeIdError::WrongScheme);
        }
        check_trust_domain(name, 0)?;
        Ok(Self(name.to_owned()))
    }

    /// The bare name, e.g. `example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID as a string, e.g. `spiffe://example.org`.
    pub fn id_string(&self) -> String {
        format!("{SCHEME_PREFIX}{}", self.0)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for TrustDomain {
    type Error = SpiffeIdError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl AsRef<str> for TrustDomain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for TrustDomain {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A SPIFFE ID, such as `spiffe://example.org/ns/billing/sa/api`.
///
/// Valid by construction (see the [module docs](self)). Serializes as the
/// full URI string; deserializing parses it strictly.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SpiffeId {
    /// The whole ID, `spiffe://td/path`.
    id: String,
    /// Byte offset where the trust domain ends and the path begins.
    td_end: usize,
}

impl SpiffeId {
    /// Parses a SPIFFE ID strictly by SPIFFE-ID.md.
    ///
    /// # Errors
    ///
    /// A [`SpiffeIdError`] naming the first problem found, and where it is.
    pub fn parse(id: &str) -> Result<Self, SpiffeIdError> {
        if id.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if id.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong {
                len: id.len(),
                max: MAX_SPIFFE_ID_LEN,
            });
        }
        let rest = id
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        let td_start = SCHEME_PREFIX.len();
        let td_len = rest.find('/').unwrap_or(rest.len());
        let td_end = td_start + td_len;
        check_trust_domain(&id[td_start..td_end], td_start).map_err(|e| match e {
            SpiffeIdError::Empty => SpiffeIdError::MissingTrustDomain,
            other => other,
        })?;
        check_path(&id[td_end..], td_end)?;
        Ok(Self {
            id: id.to_owned(),
            td_end,
        })
    }

    /// Builds the SPIFFE ID of `path` in `trust_domain`.
    ///
    /// `path` is empty (the trust domain's own ID) or starts with `/`.
    ///
    /// # Errors
    ///
    /// [`SpiffeIdError::RelativePath`] if `path` does not start with `/`, any
    /// path error [`SpiffeId::parse`] would give, or
    /// [`SpiffeIdError::TooLong`] if the result passes 2048 bytes.
    pub fn new(trust_domain: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        if !path.is_empty() && !path.starts_with('/') {
            return Err(SpiffeIdError::RelativePath);
        }
        let td_end = SCHEME_PREFIX.len() + trust_domain.as_str().len();
        let len = td_end + path.len();
        if len > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong {
                len,
                max: MAX_SPIFFE_ID_LEN,
            });
        }
        check_path(path, td_end)?;
        Ok(Self {
            id: format!("{SCHEME_PREFIX}{}{path}", trust_domain.as_str()),
            td_end,
        })
    }

    /// The trust domain this ID belongs to.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_name().to_owned())
    }

    /// The trust domain name, e.g. `example.org`, without allocating.
    pub fn trust_domain_name(&self) -> &str {
        &self.id[SCHEME_PREFIX.len()..self.td_end]
    }

    /// The path, e.g. `/ns/billing`; empty for a trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.id[self.td_end..]
    }

    /// The whole ID, e.g. `spiffe://example.org/ns/billing`.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// Whether this ID is in `trust_domain`.
    pub fn is_member_of(&self, trust_domain: &TrustDomain) -> bool {
        self.trust_domain_name() == trust_domain.as_str()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for SpiffeId {
    type Error = SpiffeIdError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = SpiffeIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let td_end = Self::parse(&s)?.td_end;
        // Keep the caller's allocation rather than the copy `parse` made.
        Ok(Self { id: s, td_end })
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> Self {
        id.id
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::try_from(s).map_err(serde::de::Error::custom)
    }
}

/// Checks a bare trust domain name; `offset` is where it starts in the
/// string the caller is checking, so error positions point into that.
fn check_trust_domain(name: &str, offset: usize) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::Empty);
    }
    // Userinfo first: in `user:secret@host` the `:` is not a port.
    if let Some(at) = name.find('@') {
        return Err(SpiffeIdError::TrustDomainHasUserinfo {
            position: offset + at,
        });
    }
    for (i, ch) in name.char_indices() {
        let position = offset + i;
        match ch {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            ':' => return Err(SpiffeIdError::TrustDomainHasPort { position }),
            '%' => return Err(SpiffeIdError::PercentEncoded { position }),
            '?' => return Err(SpiffeIdError::HasQuery { position }),
            '#' => return Err(SpiffeIdError::HasFragment { position }),
            _ => return Err(SpiffeIdError::BadTrustDomainChar { ch, position }),
        }
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong {
            len: name.len(),
            max: MAX_TRUST_DOMAIN_LEN,
        });
    }
    Ok(())
}

/// Checks a path that is empty or starts with `/`; `offset` as above.
fn check_path(path: &str, offset: usize) -> Result<(), SpiffeIdError> {
    let Some(segments) = path.strip_prefix('/') else {
        return if path.is_empty() {
            Ok(())
        } else {
            Err(SpiffeIdError::RelativePath)
        };
    };
    // Byte offset of the current segment's first byte.
    let mut start = offset + 1;
    let mut iter = segments.split('/').peekable();
    while let Some(segment) = iter.next() {
        let is_last = iter.peek().is_none();
        check_segment(segment, start, is_last)?;
        start += segment.len() + 1;
    }
    Ok(())
}

fn check_segment(segment: &str, position: usize, is_last: bool) -> Result<(), SpiffeIdError> {
    match segment {
        "" if is_last => return Err(SpiffeIdError::TrailingSlash),
        "" => return Err(SpiffeIdError::EmptySegment { position }),
        "." => {
            return Err(SpiffeIdError::DotSegment {
                segment: ".",
                position,
            });
        }
        ".." => {
            return Err(SpiffeIdError::DotSegment {
                segment: "..",
                position,
            });
        }
        _ => {}
    }
    for (i, ch) in segment.char_indices() {
        let position = position + i;
        match ch {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => {}
            '%' => return Err(SpiffeIdError::PercentEncoded { position }),
            '?' => return Err(SpiffeIdError::HasQuery { position }),
            '#' => return Err(SpiffeIdError::HasFragment { position }),
            _ => return Err(SpiffeIdError::BadPathChar { ch, position }),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use SpiffeIdError as E;

    #[test]
    fn valid_ids_parse_into_their_parts() {
        let cases = [
            // (input, trust domain, path)
            ("spiffe://example.org", "example.org", ""),
            ("spiffe://example.org/path", "example.org", "/path"),
            (
                "spiffe://staging.example.com/payments/mysql",
                "staging.example.com",
                "/payments/mysql",
            ),
            (
                "spiffe://k8s-west.example.com/ns/staging/sa/default",
                "k8s-west.example.com",
                "/ns/staging/sa/default",
            ),
            (
                "spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453",
                "example.com",
                "/9eebccd2-12bf-40a6-b262-65fe0487d453",
            ),
            (
                "spiffe://trust_domain-1.x/A.b-C_d",
                "trust_domain-1.x",
                "/A.b-C_d",
            ),
            // IPv4 dotted quads are valid trust domain names (SPIFFE-ID.md §2.1).
            ("spiffe://192.168.1.1/x", "192.168.1.1", "/x"),
            // Dots inside a segment are fine; only "." and ".." segments are not.
            (
                "spiffe://example.org/.../a..b/.x",
                "example.org",
                "/.../a..b/.x",
            ),
        ];
        for (input, td, path) in cases {
            let id = SpiffeId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(id.as_str(), input);
            assert_eq!(id.to_string(), input);
            assert_eq!(id.trust_domain_name(), td, "{input}");
            assert_eq!(id.trust_domain().as_str(), td, "{input}");
            assert_eq!(id.path(), path, "{input}");
            assert!(id.is_member_of(&TrustDomain::new(td).unwrap()));
            assert_eq!(input.parse::<SpiffeId>().unwrap(), id);
            assert_eq!(SpiffeId::try_from(input.to_owned()).unwrap(), id);
            assert_eq!(SpiffeId::try_from(input).unwrap(), id);
        }
    }

    #[test]
    fn invalid_ids_fail_with_the_specific_error() {
        let cases: &[(&str, SpiffeIdError)] = &[
            ("", E::Empty),
            ("example.org/path", E::WrongScheme),
            ("SPIFFE://example.org/path", E::WrongScheme),
            ("Spiffe://example.org", E::WrongScheme),
            ("https://example.org/path", E::WrongScheme),
            ("spiffe:/example.org", E::WrongScheme),
            ("spiffe://", E::MissingTrustDomain),
            ("spiffe:///path", E::MissingTrustDomain),
            (
                "spiffe://Example.org/path",
                E::BadTrustDomainChar {
                    ch: 'E',
                    position: 9,
                },
            ),
            (
                "spiffe://example.ORG",
                E::BadTrustDomainChar {
                    ch: 'O',
                    position: 17,
                },
            ),
            (
                "spiffe://exa mple.org",
                E::BadTrustDomainChar {
                    ch: ' ',
                    position: 12,
                },
            ),
            (
                "spiffe://exämple.org",
                E::BadTrustDomainChar {
                    ch: 'ä',
                    position: 11,
                },
            ),
            (
                "spiffe://[::1]/x",
                E::BadTrustDomainChar {
                    ch: '[',
                    position: 9,
                },
            ),
            (
                "spiffe://example.org:8080/path",
                E::TrustDomainHasPort { position: 20 },
            ),
            (
                "spiffe://example.org:/path",
                E::TrustDomainHasPort { position: 20 },
            ),
            (
                "spiffe://user@example.org/path",
                E::TrustDomainHasUserinfo { position: 13 },
            ),
            (
                "spiffe://user:pw@example.org/path",
                E::TrustDomainHasUserinfo { position: 16 },
            ),
            ("spiffe://example%2eorg", E::PercentEncoded { position: 16 }),
            ("spiffe://example.org?x=1", E::HasQuery { position: 20 }),
            (
                "spiffe://example.org/path?x=1",
                E::HasQuery { position: 25 },
            ),
            ("spiffe://example.org#frag", E::HasFragment { position: 20 }),
            (
                "spiffe://example.org/path#frag",
                E::HasFragment { position: 25 },
            ),
            (
                "spiffe://example.org/pa%20th",
                E::PercentEncoded { position: 23 },
            ),
            (
                "spiffe://example.org/%2e%2e/x",
                E::PercentEncoded { position: 21 },
            ),
            ("spiffe://example.org/", E::TrailingSlash),
            ("spiffe://example.org/path/", E::TrailingSlash),
            (
                "spiffe://example.org//path",
                E::EmptySegment { position: 21 },
            ),
            (
                "spiffe://example.org/a//b",
                E::EmptySegment { position: 23 },
            ),
            (
                "spiffe://example.org/.",
                E::DotSegment {
                    segment: ".",
                    position: 21,
                },
            ),
            (
                "spiffe://example.org/a/./b",
                E::DotSegment {
                    segment: ".",
                    position: 23,
                },
            ),
            (
                "spiffe://example.org/..",
                E::DotSegment {
                    segment: "..",
                    position: 21,
                },
            ),
            (
                "spiffe://example.org/a/../b",
                E::DotSegment {
                    segment: "..",
                    position: 23,
                },
            ),
            (
                "spiffe://example.org/pa th",
                E::BadPathChar {
                    ch: ' ',
                    position: 23,
                },
            ),
            (
                "spiffe://example.org/a:b",
                E::BadPathChar {
                    ch: ':',
                    position: 22,
                },
            ),
            (
                "spiffe://example.org/a@b",
                E::BadPathChar {
                    ch: '@',
                    position: 22,
                },
            ),
            (
                "spiffe://example.org/a+b",
                E::BadPathChar {
                    ch: '+',
                    position: 22,
                },
            ),
            (
                "spiffe://example.org/caf\u{e9}",
                E::BadPathChar {
                    ch: '\u{e9}',
                    position: 24,
                },
            ),
            (
                "spiffe://example.org/a\\b",
                E::BadPathChar {
                    ch: '\\',
                    position: 22,
                },
            ),
        ];
        for (input, want) in cases {
            let got = SpiffeId::parse(input);
            assert_eq!(got.as_ref(), Err(want), "{input:?}");
            assert_eq!(input.parse::<SpiffeId>(), Err(want.clone()), "{input:?}");
        }
    }

    #[test]
    fn length_limits_are_inclusive() {
        // "spiffe://example.org" is 20 bytes; pad the path to the limit.
        let prefix = "spiffe://example.org/";
        let at_limit = format!("{prefix}{}", "a".repeat(MAX_SPIFFE_ID_LEN - prefix.len()));
        assert_eq!(at_limit.len(), 2048);
        assert!(SpiffeId::parse(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            SpiffeId::parse(&over),
            Err(E::TooLong {
                len: 2049,
                max: 2048
            })
        );

        let td = TrustDomain::new("example.org").unwrap();
        let path = &at_limit["spiffe://example.org".len()..];
        assert!(SpiffeId::new(&td, path).is_ok());
        assert_eq!(
            SpiffeId::new(&td, &format!("{path}a")),
            Err(E::TooLong {
                len: 2049,
                max: 2048
            })
        );

        let td_255 = "a".repeat(255);
        let td_256 = "a".repeat(256);
        assert!(TrustDomain::new(&td_255).is_ok());
        assert!(SpiffeId::parse(&format!("spiffe://{td_255}/x")).is_ok());
        let too_long = E::TrustDomainTooLong { len: 256, max: 255 };
        assert_eq!(TrustDomain::new(&td_256), Err(too_long.clone()));
        assert_eq!(
            SpiffeId::parse(&format!("spiffe://{td_256}/x")),
            Err(too_long)
        );
    }

    #[test]
    fn trust_domain_accepts_bare_and_spiffe_forms() {
        for input in ["example.org", "spiffe://example.org"] {
            let td = TrustDomain::new(input).unwrap();
            assert_eq!(td.as_str(), "example.org");
            assert_eq!(td.to_string(), "example.org");
            assert_eq!(td.id_string(), "spiffe://example.org");
            assert_eq!(input.parse::<TrustDomain>().unwrap(), td);
        }
        let cases: &[(&str, SpiffeIdError)] = &[
            ("", E::Empty),
            ("spiffe://", E::MissingTrustDomain),
            (
                "spiffe://example.org/path",
                E::TrustDomainHasPath { position: 20 },
            ),
            ("spiffe://example.org/", E::TrailingSlash),
            ("https://example.org", E::WrongScheme),
            (
                "Example.org",
                E::BadTrustDomainChar {
                    ch: 'E',
                    position: 0,
                },
            ),
            (
                "example.org/x",
                E::BadTrustDomainChar {
                    ch: '/',
                    position: 11,
                },
            ),
            ("example.org:443", E::TrustDomainHasPort { position: 11 }),
            ("u@example.org", E::TrustDomainHasUserinfo { position: 1 }),
            ("ex%41mple.org", E::PercentEncoded { position: 2 }),
        ];
        for (input, want) in cases {
            assert_eq!(TrustDomain::new(input).as_ref(), Err(want), "{input:?}");
        }
    }

    #[test]
    fn new_builds_from_trust_domain_and_path() {
        let td = TrustDomain::new("example.org").unwrap();
        let id = SpiffeId::new(&td, "/ns/billing").unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/ns/billing");
        assert_eq!(
            id,
            SpiffeId::parse("spiffe://example.org/ns/billing").unwrap()
        );
        let root = SpiffeId::new(&td, "").unwrap();
        assert_eq!(root.as_str(), td.id_string());
        assert_eq!(root.path(), "");

        assert_eq!(SpiffeId::new(&td, "ns/billing"), Err(E::RelativePath));
        assert_eq!(SpiffeId::new(&td, "/ns/"), Err(E::TrailingSlash));
        assert_eq!(
            SpiffeId::new(&td, "/ns/../x"),
            Err(E::DotSegment {
                segment: "..",
                position: 24
            })
        );
        assert_eq!(
            SpiffeId::new(&td, "/a?b"),
            Err(E::HasQuery { position: 22 })
        );
    }

    #[test]
    fn membership_compares_whole_trust_domain_names() {
        let id = SpiffeId::parse("spiffe://example.org/x").unwrap();
        assert!(id.is_member_of(&TrustDomain::new("example.org").unwrap()));
        assert!(!id.is_member_of(&TrustDomain::new("example.org.evil").unwrap()));
        assert!(!id.is_member_of(&TrustDomain::new("ample.org").unwrap()));
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let id = SpiffeId::parse("spiffe://example.org/ns/a").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, r#""spiffe://example.org/ns/a""#);
        assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
        let bad = serde_json::from_str::<SpiffeId>(r#""spiffe://example.org/a/../b""#);
        assert!(bad.unwrap_err().to_string().contains("'..' segments"));
        assert!(serde_json::from_str::<SpiffeId>("42").is_err());

        let td = TrustDomain::new("example.org").unwrap();
        let json = serde_json::to_string(&td).unwrap();
        assert_eq!(json, r#""example.org""#);
        assert_eq!(serde_json::from_str::<TrustDomain>(&json).unwrap(), td);
        assert!(serde_json::from_str::<TrustDomain>(r#""Example.org""#).is_err());
    }

    #[test]
    fn errors_tell_the_operator_what_is_wrong() {
        let msg = SpiffeId::parse("spiffe://Example.org")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("'E' at byte 9"), "{msg}");
        assert!(msg.contains("uppercase"), "{msg}");
        let msg = SpiffeId::parse(&"x".repeat(3000)).unwrap_err().to_string();
        assert_eq!(msg, "the SPIFFE ID is 3000 bytes long; the maximum is 2048");
    }
}
