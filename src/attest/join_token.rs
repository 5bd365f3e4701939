//! One-time join tokens: the simplest attestation evidence.
//!
//! An operator mints a token for one entry; the broker shows the secret once
//! ([`JoinTokenSecret::expose`]) and stores only its SHA-256
//! ([`TokenHash`]) in a [`JoinTokenRecord`]. A node presents the secret once;
//! the store redeems it atomically
//! ([`Store::redeem_join_token`](crate::store::Store::redeem_join_token)),
//! so a token can never attest two nodes.
//!
//! ```
//! use mayfly::attest::join_token::JoinTokenSecret;
//!
//! let secret = JoinTokenSecret::generate();
//! let again = JoinTokenSecret::parse(secret.expose()).unwrap();
//! assert_eq!(secret.hash(), again.hash());
//! assert_eq!(format!("{secret:?}"), "JoinTokenSecret([redacted])");
//! assert!(JoinTokenSecret::parse("mf1.too-short").is_err());
//! ```

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::policy::EntryId;

/// Every join token starts with this, so a leaked one is recognisable by
/// secret scanners and a future format can be told apart.
const PREFIX: &str = "mf1.";
/// Random bytes behind a token.
const SECRET_BYTES: usize = 32;
/// Base64url (no padding) length of [`SECRET_BYTES`].
const ENCODED_LEN: usize = 43;
/// Hex length of a SHA-256 digest.
const HASH_HEX_LEN: usize = 64;
/// How many hex characters of the hash make a [`TokenHash::token_id`].
const TOKEN_ID_LEN: usize = 12;

/// Why a join token (or a stored token hash) was refused.
///
/// Messages never contain the token text, so they are safe to log and return.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinTokenError {
    /// The text is not a join token: wrong prefix, wrong length, or a
    /// character outside the base64url alphabet.
    #[error("malformed join token: expected \"mf1.\" followed by 43 base64url characters")]
    Malformed,
    /// A stored token hash is not 64 lowercase hex characters.
    #[error("malformed join token hash: expected 64 lowercase hex characters")]
    MalformedHash,
}

/// A join token secret as the operator receives it: `mf1.` followed by 32
/// random bytes in base64url without padding (47 characters).
///
/// The text is zeroized on drop and `Debug` prints `[redacted]`; the only way
/// to read it is [`JoinTokenSecret::expose`].
pub struct JoinTokenSecret(Zeroizing<String>);

impl JoinTokenSecret {
    /// A fresh token from the system random number generator.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
        // The system RNG failing is not something the broker can run without.
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(&mut bytes[..]).expect("system random number generator failed");
        // Sized up front so encoding never reallocates and leaves a copy behind.
        let mut text = Zeroizing::new(String::with_capacity(PREFIX.len() + ENCODED_LEN));
        text.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&bytes[..], &mut text);
        JoinTokenSecret(text)
    }

    /// Parses a token as a node presents it.
    ///
    /// Strict: the `mf1.` prefix, exactly 43 base64url characters encoding 32
    /// bytes canonically, nothing else (no whitespace, no padding).
    ///
    /// # Errors
    ///
    /// [`JoinTokenError::Malformed`], which does not echo the input.
    pub fn parse(text: &str) -> Result<Self, JoinTokenError> {
        let body = text.strip_prefix(PREFIX).ok_or(JoinTokenError::Malformed)?;
        if body.len() != ENCODED_LEN
            || !body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(JoinTokenError::Malformed);
        }
        // Decoding also refuses non-canonical trailing bits, so each token has
        // exactly one spelling and therefore one hash.
        let decoded = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| JoinTokenError::Malformed)?,
        );
        if decoded.len() != SECRET_BYTES {
            return Err(JoinTokenError::Malformed);
        }
        Ok(JoinTokenSecret(Zeroizing::new(text.to_owned())))
    }

    /// The token text. Use it once, to show the token to the operator who
    /// minted it; never log it or put it in an error.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the token text: what the store keeps instead of it.
    pub fn hash(&self) -> TokenHash {
        let digest = digest::digest(&digest::SHA256, self.0.as_bytes());
        TokenHash(hex::encode(digest.as_ref()))
    }
}

impl fmt::Debug for JoinTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinTokenSecret([redacted])")
    }
}

/// The SHA-256 of a join token's text, 64 lowercase hex characters.
///
/// Stores key tokens by this, never by the secret. It is not secret itself
/// (the token has 256 bits of entropy), but prefer [`TokenHash::token_id`]
/// in logs.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenHash(String);

impl TokenHash {
    /// Parses a hash as stored: 64 lowercase hex characters.
    ///
    /// # Errors
    ///
    /// [`JoinTokenError::MalformedHash`].
    pub fn parse(text: &str) -> Result<Self, JoinTokenError> {
        if text.len() == HASH_HEX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(TokenHash(text.to_owned()))
        } else {
            Err(JoinTokenError::MalformedHash)
        }
    }

    /// The hash as lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex characters: a non-secret handle for audit logs and
    /// operators.
    pub fn token_id(&self) -> String {
        // Every constructor checks the length is HASH_HEX_LEN, so this slice is in bounds.
        self.0[..TOKEN_ID_LEN].to_owned()
    }
}

impl TryFrom<String> for TokenHash {
    type Error = JoinTokenError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        TokenHash::parse(&value)
    }
}

impl From<TokenHash> for String {
    fn from(hash: TokenHash) -> Self {
        hash.0
    }
}

/// What the store keeps about a join token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    /// The token's hash, its key.
    pub hash: TokenHash,
    /// The entry a node redeeming the token attests as.
    pub entry_id: EntryId,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds from which the token is refused.
    pub expires_at: i64,
    /// The operator who minted it.
    pub created_by: String,
    /// Unix seconds of the one redemption, once redeemed.
    pub used_at: Option<i64>,
}

impl JoinTokenRecord {
    /// Whether the token is past its expiry at `now` (Unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn generate_then_parse_round_trips() {
        let secret = JoinTokenSecret::generate();
        assert!(secret.expose().starts_with("mf1."));
        assert_eq!(secret.expose().len(), 47);
        let parsed = JoinTokenSecret::parse(secret.expose()).unwrap();
        assert_eq!(parsed.expose(), secret.expose());
        assert_eq!(parsed.hash(), secret.hash());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let valid = JoinTokenSecret::generate();
        let text = valid.expose();
        assert!(JoinTokenSecret::parse(text).is_ok());

        let body = &text[4..];
        let cases = [
            format!("mf2.{body}"),
            format!("MF1.{body}"),
            body.to_owned(),
            format!("mf1.{}", &body[1..]),
            format!("mf1.{body}A"),
            format!("mf1.{body}="),
            format!("mf1.+{}", &body[1..]),
            format!("mf1./{}", &body[1..]),
            format!("mf1. {}", &body[1..]),
            format!(" {text}"),
            format!("{text}\n"),
            String::new(),
        ];
        for case in &cases {
            assert_eq!(
                JoinTokenSecret::parse(case).map(|_| ()),
                Err(JoinTokenError::Malformed),
                "{case:?}"
            );
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        // 32 zero bytes encode to 42 'A's then 'A'; 'B' sets a bit that
        // encodes nothing, so it would be a second spelling of the same token.
        let canonical = format!("mf1.{}", "A".repeat(43));
        assert!(JoinTokenSecret::parse(&canonical).is_ok());
        let second_spelling = format!("mf1.{}B", "A".repeat(42));
        assert_eq!(
            JoinTokenSecret::parse(&second_spelling).map(|_| ()),
            Err(JoinTokenError::Malformed)
        );
    }

    #[test]
    fn debug_and_errors_do_not_reveal_the_secret() {
        let secret = JoinTokenSecret::generate();
        let debug = format!("{secret:?}");
        assert!(debug.contains("[redacted]"));
        assert!(!debug.contains(&secret.expose()[4..]));

        let broken = format!("{}!", secret.expose());
        let error = JoinTokenSecret::parse(&broken).unwrap_err();
        assert!(!error.to_string().contains(&secret.expose()[4..]));
        assert!(!format!("{error:?}").contains(&secret.expose()[4..]));
    }

    #[test]
    fn hash_is_stable_and_differs_between_tokens() {
        let one = JoinTokenSecret::generate();
        let two = JoinTokenSecret::generate();
        assert_eq!(one.hash(), one.hash());
        assert_eq!(
            one.hash(),
            JoinTokenSecret::parse(one.expose()).unwrap().hash()
        );
        assert_ne!(one.hash(), two.hash());
        assert_eq!(one.hash().as_str().len(), 64);
        assert_eq!(one.hash().token_id(), one.hash().as_str()[..12]);
        assert!(!one.hash().as_str().contains(&one.expose()[4..]));
    }

    #[test]
    fn hash_matches_an_independent_sha256() {
        // `printf 'mf1.%s' AAA…A (43) | sha256sum`
        let secret = JoinTokenSecret::parse(&format!("mf1.{}", "A".repeat(43))).unwrap();
        assert_eq!(
            secret.hash().as_str(),
            "40782d8746c479180c2fce82dde4466da7b654e961f647c7a63f4392ed18b9b4"
        );
        assert_eq!(secret.hash().token_id(), "40782d8746c4");
    }

    #[test]
    fn token_hash_parses_strictly() {
        let hash = JoinTokenSecret::parse(&format!("mf1.{}", "A".repeat(43)))
            .unwrap()
            .hash();
        assert_eq!(TokenHash::parse(hash.as_str()), Ok(hash.clone()));
        let upper = hash.as_str().to_uppercase();
        let short = &hash.as_str()[..63];
        for bad in [upper.as_str(), short, "", "g".repeat(64).as_str()] {
            assert_eq!(
                TokenHash::parse(bad),
                Err(JoinTokenError::MalformedHash),
                "{bad:?}"
            );
        }
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(serde_json::from_str::<TokenHash>(&json).unwrap(), hash);
        assert!(serde_json::from_str::<TokenHash>("\"abc\"").is_err());
    }
}
