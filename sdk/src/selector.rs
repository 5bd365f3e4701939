//! [`Selector`]: a property a workload proves to an attestor and an entry
//! requires (`k8s:ns:billing`, `unix:uid:1000`), shared by the broker, which
//! matches attested selectors to entries, and the agent, which attests local
//! callers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest selector accepted, type and value together.
pub const MAX_SELECTOR_LEN: usize = 256;

/// Why a text is not a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// There is no `:` between type and value.
    #[error("{text:?} is not of the form type:value")]
    NoType {
        /// The text, as given.
        text: String,
    },
    /// The type is empty or has characters other than `[a-z0-9_]`.
    #[error("type {kind:?} must be lowercase letters, digits or '_'")]
    BadType {
        /// The type, as given.
        kind: String,
    },
    /// The value is empty, too long, or has spaces or unprintable characters.
    #[error("value of {kind:?} must be 1-{MAX_SELECTOR_LEN} printable characters without spaces")]
    BadValue {
        /// The type whose value is bad.
        kind: String,
    },
}

/// A property a workload must prove, `type:value` (`k8s:ns:billing`,
/// `unix:uid:1000`). The type is lowercase `[a-z0-9_]+`; the value is
/// printable ASCII without spaces; the whole at most [`MAX_SELECTOR_LEN`]
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Selector(String);

impl Selector {
    /// Parses `type:value`.
    ///
    /// # Errors
    /// [`SelectorError`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let Some((kind, rest)) = text.split_once(':') else {
            return Err(SelectorError::NoType {
                text: text.chars().take(MAX_SELECTOR_LEN).collect(),
            });
        };
        if kind.is_empty()
            || !kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(SelectorError::BadType {
                kind: kind.chars().take(MAX_SELECTOR_LEN).collect(),
            });
        }
        if rest.is_empty()
            || text.len() > MAX_SELECTOR_LEN
            || !rest.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(SelectorError::BadValue {
                kind: kind.to_owned(),
            });
        }
        Ok(Selector(text.to_owned()))
    }

    /// The selector as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `:`.
    pub fn kind(&self) -> &str {
        self.0.split_once(':').map_or("", |(kind, _)| kind)
    }
}

impl TryFrom<String> for Selector {
    type Error = SelectorError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Selector::parse(&value)
    }
}

impl From<Selector> for String {
    fn from(selector: Selector) -> Self {
        selector.0
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_strictly() {
        let good = Selector::parse("k8s:ns:billing").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(good.kind(), "k8s");
        assert_eq!(good.as_str(), "k8s:ns:billing");
        assert!(Selector::parse("unix:uid:0").is_ok());
        assert!(matches!(
            Selector::parse("nocolon"),
            Err(SelectorError::NoType { .. })
        ));
        for bad_type in [":x", "K8s:ns", "k-8:x"] {
            assert!(
                matches!(
                    Selector::parse(bad_type),
                    Err(SelectorError::BadType { .. })
                ),
                "{bad_type}"
            );
        }
        let long = format!("k8s:{}", "a".repeat(MAX_SELECTOR_LEN));
        for bad_value in ["k8s:", "k8s:a b", "k8s:\u{7f}", long.as_str()] {
            assert!(
                matches!(
                    Selector::parse(bad_value),
                    Err(SelectorError::BadValue { .. })
                ),
                "{bad_value}"
            );
        }
        let exactly = format!("k8s:{}", "a".repeat(MAX_SELECTOR_LEN - 4));
        assert!(Selector::parse(&exactly).is_ok());
    }
}
