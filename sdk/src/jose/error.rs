//! Why the JOSE layer refused a token.

use std::fmt;

use super::algorithm::{JwsAlgorithm, names};
use super::key::KeyType;

/// Longest attacker-supplied string (header name, `kid`, `alg`) quoted in an error.
const MAX_QUOTED_LEN: usize = 64;

/// One of the three dot-separated parts of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenPart {
    /// The JOSE header.
    Header,
    /// The claims set (payload).
    Claims,
    /// The signature.
    Signature,
}

impl fmt::Display for TokenPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Claims => "claims",
            Self::Signature => "signature",
        })
    }
}

/// Why a compact JWS was refused, before its claims were judged.
///
/// Variants carry what an operator needs to act, never the token; strings
/// the token chose are shortened.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// The token is longer than the limit; nothing was decoded.
    #[error("the token is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The token does not have exactly three dot-separated parts.
    #[error("a JWS has three dot-separated parts; this token has {count}")]
    WrongPartCount {
        /// How many parts it has.
        count: usize,
    },

    /// A part is not unpadded base64url.
    #[error("the token's {part} is not unpadded base64url")]
    InvalidBase64 {
        /// Which part.
        part: TokenPart,
    },

    /// The header or claims are not valid JSON.
    #[error("the token's {part} is not valid JSON")]
    InvalidJson {
        /// Which part.
        part: TokenPart,
    },

    /// The header or claims are JSON but not an object.
    #[error("the token's {part} is not a JSON object")]
    NotAnObject {
        /// Which part.
        part: TokenPart,
    },

    /// An object in the header or claims names a member twice: two parsers
    /// that pick different ones are how token confusion starts.
    #[error("the token's {part} has {name:?} more than once")]
    DuplicateMember {
        /// Which part.
        part: TokenPart,
        /// The repeated name (shortened if long).
        name: String,
    },

    /// The header has no `alg`.
    #[error("the token header has no \"alg\"")]
    MissingAlgorithm,

    /// A header parameter has the wrong JSON type.
    #[error("header parameter {name:?} must be {expected}")]
    InvalidHeaderType {
        /// The parameter.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
    },

    /// `alg` is not on this use's allow-list.
    #[error("algorithm {alg:?} is not accepted (allowed: {})", names(allowed))]
    UnsupportedAlgorithm {
        /// The token's `alg` (shortened if long).
        alg: String,
        /// The allow-list.
        allowed: &'static [JwsAlgorithm],
    },

    /// The header has a parameter this use does not allow.
    #[error("header parameter {name:?} is not allowed here (only {})", allowed.join(", "))]
    UnexpectedHeader {
        /// The parameter's name (shortened if long).
        name: String,
        /// The parameters allowed.
        allowed: &'static [&'static str],
    },

    /// The header lists critical extensions (`crit`); RFC 7515 §4.1.11 says
    /// to refuse a token whose extensions we do not understand, and we
    /// understand none.
    #[error("critical header extensions (crit) are not supported")]
    CriticalHeader,

    /// `typ` is present but not one this use accepts.
    #[error("token type {typ:?} is not accepted (allowed: {})", allowed.join(", "))]
    UnsupportedType {
        /// The token's `typ` (shortened if long).
        typ: String,
        /// The types allowed.
        allowed: &'static [&'static str],
    },

    /// The header has no `kid`, so no key can be chosen.
    #[error("the token header has no \"kid\"; cannot choose a verification key")]
    MissingKeyId,

    /// The token's `alg` cannot be used with the type of the key its `kid`
    /// names.
    #[error("algorithm {alg} cannot be verified with key {kid:?}, which is {key_type}")]
    AlgorithmKeyMismatch {
        /// The token's `alg`.
        alg: JwsAlgorithm,
        /// The key ID (shortened if long).
        kid: String,
        /// The key's type.
        key_type: KeyType,
    },

    /// The signature does not verify with the named key.
    #[error("the token's signature does not verify with key {kid:?}")]
    BadSignature {
        /// The key ID (shortened if long).
        kid: String,
    },
}

/// Shortens an attacker-supplied string (to 64 bytes, on a character
/// boundary) before it goes into an error or a log line.
pub fn quoted(s: &str) -> String {
    if s.len() <= MAX_QUOTED_LEN {
        return s.to_owned();
    }
    let mut end = MAX_QUOTED_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_are_shortened_on_a_character_boundary() {
        assert_eq!(quoted("k1"), "k1");
        let exact = "k".repeat(MAX_QUOTED_LEN);
        assert_eq!(quoted(&exact), exact);
        let long = quoted(&"k".repeat(1000));
        assert_eq!(long, format!("{}…", "k".repeat(MAX_QUOTED_LEN)));
        // A two-byte character straddling the cut is left out whole.
        let straddling = format!("{}é", "k".repeat(MAX_QUOTED_LEN - 1));
        assert_eq!(
            quoted(&format!("{straddling}tail")),
            format!("{}…", "k".repeat(MAX_QUOTED_LEN - 1))
        );
    }
}
