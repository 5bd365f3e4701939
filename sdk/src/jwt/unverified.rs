//! Reading a JWT-SVID without trusting it.

use serde_json::Value;

use super::JwtSvidError;
use crate::jose::JwsPolicy;

/// The header of a JWT-SVID, as far as it was checked.
pub type JwtHeader = crate::jose::JoseHeader;

/// Decodes a token's header and claims WITHOUT verifying its signature or
/// any claim: for display and audit only, never for a security decision.
///
/// Applies the default size limit ([`DEFAULT_MAX_TOKEN_BYTES`](super::DEFAULT_MAX_TOKEN_BYTES))
/// and the same structure checks as
/// [`JwtSvidValidator::validate`](super::JwtSvidValidator::validate): three
/// base64url parts, a header with only `alg`, `kid` and `typ` (and `typ`, if
/// present, `JWT` or `JOSE`), JSON objects without repeated names. The
/// algorithm is reported, not judged.
///
/// # Errors
///
/// [`JwtSvidError::Jose`] with the structure variants of
/// [`JoseError`](crate::jose::JoseError): `TooLarge`, `WrongPartCount`,
/// `InvalidBase64`, `InvalidJson`, `NotAnObject`, `DuplicateMember`,
/// `MissingAlgorithm`, `InvalidHeaderType`, `UnexpectedHeader`,
/// `UnsupportedType`.
pub fn insecure_decode_unverified(token: &str) -> Result<(JwtHeader, Value), JwtSvidError> {
    let (header, claims) = JwsPolicy::JWT_SVID.insecure_decode(token)?;
    Ok((header, Value::Object(claims)))
}
