//! The base64url of JWS parts (RFC 7515 §2): the URL-safe alphabet, no
//! padding, and one encoding per value (non-canonical trailing bits are
//! refused), so a token has exactly one spelling of its header and claims.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::{JoseError, TokenPart};

/// Whether every byte of `text` is in the base64url alphabet: a cheap
/// check, run on every part before anything is decoded.
pub fn is_alphabet(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Decodes one part of a token.
///
/// # Errors
///
/// [`JoseError::InvalidBase64`] naming `part`: a character outside the
/// alphabet, padding, an impossible length or non-zero trailing bits.
pub fn decode(text: &str, part: TokenPart) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JoseError::InvalidBase64 { part })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_unpadded_base64url_decodes() {
        assert_eq!(decode("aGk", TokenPart::Header), Ok(b"hi".to_vec()));
        assert_eq!(decode("", TokenPart::Signature), Ok(Vec::new()));
        assert!(is_alphabet("aGk-_09"));
        let refused = |text: &str| decode(text, TokenPart::Claims);
        for text in ["aGk=", "a+k", "a/k", "A", "aGl"] {
            // `aGl` differs from `aGk` only in trailing bits: a second
            // spelling of "hi", refused.
            assert_eq!(
                refused(text),
                Err(JoseError::InvalidBase64 {
                    part: TokenPart::Claims
                }),
                "{text}"
            );
        }
        for text in ["aGk=", "a+k", "a/k", "a.k", "a k"] {
            assert!(!is_alphabet(text), "{text}");
        }
    }
}
