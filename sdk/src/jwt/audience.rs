//! [`Audience`]: who a JWT-SVID is for, parsed, not validated.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest audience accepted, in bytes.
pub const MAX_AUDIENCE_LEN: usize = 256;

/// Why a string is not a valid audience.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudienceError {
    /// The audience is empty.
    #[error("the audience is empty")]
    Empty,
    /// The audience is longer than [`MAX_AUDIENCE_LEN`].
    #[error("the audience is {len} bytes long; the maximum is {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The audience has whitespace or a control character.
    #[error(
        "the audience has {ch:?} at byte {position}; whitespace and control characters are not allowed"
    )]
    BadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        position: usize,
    },
}

/// A JWT audience: who a token is for, e.g. `billing` or
/// `spiffe://example.org/billing`.
///
/// Not empty, at most 256 bytes, no whitespace or control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Audience(String);

impl Audience {
    /// Checks and wraps an audience.
    ///
    /// # Errors
    ///
    /// [`AudienceError`] if it is empty, too long, or has whitespace or a
    /// control character.
    pub fn new(audience: &str) -> Result<Self, AudienceError> {
        if audience.is_empty() {
            return Err(AudienceError::Empty);
        }
        if audience.len() > MAX_AUDIENCE_LEN {
            return Err(AudienceError::TooLong {
                len: audience.len(),
                max: MAX_AUDIENCE_LEN,
            });
        }
        if let Some((position, ch)) = audience
            .char_indices()
            .find(|(_, ch)| ch.is_whitespace() || ch.is_control())
        {
            return Err(AudienceError::BadChar { ch, position });
        }
        Ok(Self(audience.to_owned()))
    }

    /// The audience string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Audience {
    type Err = AudienceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for Audience {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_newtype_checks_its_input() {
        for good in ["billing", "spiffe://example.org/reports", "ünïcode"] {
            assert_eq!(Audience::new(good).unwrap().as_str(), good);
            assert_eq!(good.parse::<Audience>().unwrap().to_string(), good);
        }
        assert_eq!(Audience::new(""), Err(AudienceError::Empty));
        assert!(Audience::new(&"a".repeat(256)).is_ok());
        assert_eq!(
            Audience::new(&"a".repeat(257)),
            Err(AudienceError::TooLong { len: 257, max: 256 })
        );
        assert_eq!(
            Audience::new("bill ing"),
            Err(AudienceError::BadChar {
                ch: ' ',
                position: 4
            })
        );
        assert_eq!(
            Audience::new("billing\n"),
            Err(AudienceError::BadChar {
                ch: '\n',
                position: 7
            })
        );
        assert_eq!(
            Audience::new("a\u{7f}"),
            Err(AudienceError::BadChar {
                ch: '\u{7f}',
                position: 1
            })
        );
        let json = serde_json::to_string(&Audience::new("billing").unwrap()).unwrap();
        assert_eq!(json, r#""billing""#);
        assert_eq!(
            serde_json::from_str::<Audience>(&json).unwrap(),
            Audience::new("billing").unwrap()
        );
        assert!(serde_json::from_str::<Audience>(r#""a b""#).is_err());
    }
}
