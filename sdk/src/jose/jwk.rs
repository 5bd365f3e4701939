//! A JWK's public key parameters (RFC 7517, RFC 7518 §6) → [`JwtPublicKey`].
//!
//! The SPIFFE bundle and the attestors' JWKS read their keys here; what
//! each does with a key's other members (`use`, `kid`, `alg`, `key_ops`,
//! `x5c`) is its own policy. `kty` `EC` on `P-256` or `P-384` (coordinates
//! exactly the curve's size, RFC 7518 §6.2.1.2) and `RSA` (`n`, `e`) are
//! read; any other `kty` or curve is a key this layer cannot verify, which
//! the caller skips. RSA integers are kept without leading zero octets, so
//! the same key always reads the same.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::key::strip_leading_zeros;
use crate::bundle::JwtPublicKey;

/// Why a JWK's key parameters cannot be read.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// A member the key type requires is absent.
    #[error("the JWK has no {member:?} member")]
    MissingMember {
        /// The member.
        member: &'static str,
    },
    /// A member is not a JSON string.
    #[error("the JWK member {member:?} must be a string")]
    NotAString {
        /// The member.
        member: &'static str,
    },
    /// A member is not unpadded base64url.
    #[error("the JWK member {member:?} is not unpadded base64url")]
    InvalidBase64 {
        /// The member.
        member: &'static str,
    },
    /// An EC coordinate has the wrong length for its curve.
    #[error("the JWK member {member:?} is {len} bytes; the curve needs {expected} bytes")]
    CoordinateLength {
        /// `x` or `y`.
        member: &'static str,
        /// Its decoded length.
        len: usize,
        /// The length the curve requires.
        expected: usize,
    },
}

/// Reads the public key a JWK describes: `Ok(None)` for a `kty` or curve
/// Mayfly does not verify with. Whether the key is usable (a point on its
/// curve, an RSA key of an accepted size) is for
/// [`VerificationKey::new`](super::VerificationKey::new) to say.
///
/// # Errors
///
/// [`JwkError`] naming the first member that is missing, not a string, not
/// base64url, or (for EC) not the curve's size. Members are read in the
/// order `kty`, `crv`, `x`, `y` or `kty`, `n`, `e`.
pub fn public_key(jwk: &Map<String, Value>) -> Result<Option<JwtPublicKey>, JwkError> {
    let members = Members(jwk);
    let key = match members.string("kty")? {
        "EC" => match members.string("crv")? {
            "P-256" => JwtPublicKey::EcP256 {
                x: members.coordinate("x")?,
                y: members.coordinate("y")?,
            },
            "P-384" => JwtPublicKey::EcP384 {
                x: members.coordinate("x")?,
                y: members.coordinate("y")?,
            },
            _ => return Ok(None),
        },
        "RSA" => JwtPublicKey::Rsa {
            n: strip_leading_zeros(&members.base64url("n")?).to_vec(),
            e: strip_leading_zeros(&members.base64url("e")?).to_vec(),
        },
        _ => return Ok(None),
    };
    Ok(Some(key))
}

/// Typed access to a JWK's members.
struct Members<'a>(&'a Map<String, Value>);

impl Members<'_> {
    fn string(&self, member: &'static str) -> Result<&str, JwkError> {
        match self.0.get(member) {
            Some(Value::String(value)) => Ok(value),
            Some(_) => Err(JwkError::NotAString { member }),
            None => Err(JwkError::MissingMember { member }),
        }
    }

    fn base64url(&self, member: &'static str) -> Result<Vec<u8>, JwkError> {
        URL_SAFE_NO_PAD
            .decode(self.string(member)?)
            .map_err(|_| JwkError::InvalidBase64 { member })
    }

    fn coordinate<const N: usize>(&self, member: &'static str) -> Result<[u8; N], JwkError> {
        let bytes = self.base64url(member)?;
        <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| JwkError::CoordinateLength {
            member,
            len: bytes.len(),
            expected: N,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(jwk: Value) -> Result<Option<JwtPublicKey>, JwkError> {
        let Value::Object(members) = jwk else {
            panic!("not an object")
        };
        public_key(&members)
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn ec_and_rsa_parameters_are_read() {
        let (x, y) = (b64(&[1; 32]), b64(&[2; 32]));
        assert_eq!(
            read(json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": "k"})),
            Ok(Some(JwtPublicKey::EcP256 {
                x: [1; 32],
                y: [2; 32]
            }))
        );
        let (x, y) = (b64(&[3; 48]), b64(&[4; 48]));
        assert_eq!(
            read(json!({"kty": "EC", "crv": "P-384", "x": x, "y": y})),
            Ok(Some(JwtPublicKey::EcP384 {
                x: [3; 48],
                y: [4; 48]
            }))
        );
        // A padded modulus reads as the same integer as the minimal one.
        for n in [vec![0xc1, 2], vec![0, 0, 0xc1, 2]] {
            assert_eq!(
                read(json!({"kty": "RSA", "n": b64(&n), "e": "AQAB"})),
                Ok(Some(JwtPublicKey::Rsa {
                    n: vec![0xc1, 2],
                    e: vec![1, 0, 1]
                }))
            );
        }
    }

    #[test]
    fn other_key_types_and_curves_are_not_read() {
        assert_eq!(
            read(json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})),
            Ok(None)
        );
        assert_eq!(
            read(json!({"kty": "EC", "crv": "P-521", "x": "AAAA", "y": "AAAA"})),
            Ok(None)
        );
        assert_eq!(read(json!({"kty": "oct", "k": "AAAA"})), Ok(None));
    }

    #[test]
    fn malformed_parameters_name_the_member() {
        let x = b64(&[1; 32]);
        assert_eq!(
            read(json!({"crv": "P-256"})),
            Err(JwkError::MissingMember { member: "kty" })
        );
        assert_eq!(
            read(json!({"kty": "EC", "x": x})),
            Err(JwkError::MissingMember { member: "crv" })
        );
        // x is read whole before y is looked at.
        assert_eq!(
            read(json!({"kty": "EC", "crv": "P-256", "x": "AAAA"})),
            Err(JwkError::CoordinateLength {
                member: "x",
                len: 3,
                expected: 32
            })
        );
        assert_eq!(
            read(json!({"kty": "EC", "crv": "P-256", "x": x})),
            Err(JwkError::MissingMember { member: "y" })
        );
        assert_eq!(
            read(json!({"kty": "EC", "crv": "P-256", "x": x, "y": format!("{x}=")})),
            Err(JwkError::InvalidBase64 { member: "y" })
        );
        assert_eq!(
            read(json!({"kty": "RSA", "n": 7, "e": "AQAB"})),
            Err(JwkError::NotAString { member: "n" })
        );
        assert_eq!(
            read(json!({"kty": 1})),
            Err(JwkError::NotAString { member: "kty" })
        );
    }
}
