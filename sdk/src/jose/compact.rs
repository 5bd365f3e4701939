//! The JWS compact serialization (RFC 7515 §7.1): `header.claims.signature`.
//! The token's size is checked before anything else, and each part's
//! alphabet before any is decoded.

use super::base64url;
use super::error::{JoseError, TokenPart};

/// A token split into its parts; borrows the token. Nothing is decoded yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactParts<'a> {
    /// The encoded header.
    pub header: &'a str,
    /// The encoded claims (payload).
    pub claims: &'a str,
    /// The encoded signature.
    pub signature: &'a str,
    /// `header.claims`, the bytes the signature covers.
    pub signing_input: &'a str,
}

/// Splits `token` after checking it is at most `max_bytes` long.
///
/// # Errors
///
/// [`JoseError::TooLarge`] before anything else is looked at;
/// [`JoseError::WrongPartCount`] unless there are exactly three parts;
/// [`JoseError::InvalidBase64`] for the first part with a character outside
/// the base64url alphabet (padding included).
pub fn split(token: &str, max_bytes: usize) -> Result<CompactParts<'_>, JoseError> {
    if token.len() > max_bytes {
        return Err(JoseError::TooLarge {
            len: token.len(),
            max: max_bytes,
        });
    }
    let mut pieces = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(JoseError::WrongPartCount {
            count: token.split('.').count(),
        });
    };
    for (part, text) in [
        (TokenPart::Header, header),
        (TokenPart::Claims, claims),
        (TokenPart::Signature, signature),
    ] {
        if !base64url::is_alphabet(text) {
            return Err(JoseError::InvalidBase64 { part });
        }
    }
    Ok(CompactParts {
        header,
        claims,
        signature,
        signing_input: &token[..header.len() + 1 + claims.len()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_parts_within_the_limit() {
        let parts = split("aGk.e30.c2ln", 12).unwrap();
        assert_eq!(
            parts,
            CompactParts {
                header: "aGk",
                claims: "e30",
                signature: "c2ln",
                signing_input: "aGk.e30",
            }
        );
        assert_eq!(
            split("aGk.e30.c2ln", 11),
            Err(JoseError::TooLarge { len: 12, max: 11 })
        );
        // The limit comes first: an oversized token of garbage says so.
        assert_eq!(
            split(&"!".repeat(20), 11),
            Err(JoseError::TooLarge { len: 20, max: 11 })
        );
        for (token, count) in [("", 1), ("a.b", 2), ("a.b.c.d", 4), ("....", 5)] {
            assert_eq!(
                split(token, 100),
                Err(JoseError::WrongPartCount { count }),
                "{token:?}"
            );
        }
        // An empty signature is a shape question for the verifier, not here.
        assert!(split("aGk.e30.", 100).is_ok());
        assert_eq!(
            split("aGk=.e30.c2ln", 100),
            Err(JoseError::InvalidBase64 {
                part: TokenPart::Header
            })
        );
        assert_eq!(
            split("aGk.e30.c2l+", 100),
            Err(JoseError::InvalidBase64 {
                part: TokenPart::Signature
            })
        );
    }
}
