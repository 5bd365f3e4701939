//! JWT-SVID validation, strict by JWT-SVID.md and RFC 8725.
//!
//! [`JwtSvidValidator`] holds one trust domain's JWT authorities, parsed once.
//! [`JwtSvidValidator::validate`] checks, in this order, and stops at the
//! first failure:
//!
//! 1. the token's size, before decoding anything;
//! 2. its shape: three unpadded base64url parts;
//! 3. the header: only `alg`, `kid` and `typ`; `alg` on the allow-list
//!    (ES256, ES384, RS256, PS256) before any key is looked at; `typ`, if
//!    present, `JWT` or `JOSE`; a known `kid` whose key type fits `alg`;
//! 4. the signature;
//! 5. the claims: `sub` the SPIFFE ID of a workload in the trust domain (not
//!    the trust domain's own ID); `exp` an integer and not past; `aud`
//!    containing the caller's audience; `nbf` and `iat`, if present, integers
//!    and not in the future; and the lifetime: `exp` at most the maximum
//!    lifetime ([`MAX_JWT_SVID_LIFETIME`], 1 h, by default) after the time of
//!    the check and, if present, after `iat`. A small leeway (30 s by
//!    default) applies to every time check.
//!
//! JWT-SVID.md sets no upper limit on `exp`; this validator does, because a
//! validly signed token that lives for years (an `exp` of `i64::MAX`) is
//! what a compromised or misconfigured signer would produce, and Mayfly
//! never issues one. Other claims, such as `iss`, are allowed and ignored.
//!
//! Errors never contain the token: it is a bearer credential.
//!
//! ```no_run
//! use mayfly_sdk::jwt::{Audience, JwtSvidValidator};
//! # fn demo(bundle: mayfly_sdk::bundle::SpiffeBundle, token: &str, now: i64)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! let validator = JwtSvidValidator::new(bundle.trust_domain.clone(), &bundle.jwt_authorities)?;
//! let audience = Audience::new("billing")?;
//! let svid = validator.validate(token, &audience, now)?;
//! println!("caller is {}", svid.spiffe_id);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA256,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::bundle::{JwtAuthority, JwtPublicKey};
use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

/// Default clock leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The longest lifetime a JWT-SVID may have, by default: Mayfly's hard cap
/// on every credential it issues (the broker's `HARD_TTL_CAP` is this
/// constant, so the two cannot drift apart). Change it per validator with
/// [`JwtSvidValidator::with_max_lifetime`].
pub const MAX_JWT_SVID_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Default limit on a token's length, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The longest audience accepted, in bytes.
pub const MAX_AUDIENCE_LEN: usize = 256;

/// The header parameters a JWT-SVID may carry (JWT-SVID.md §2).
const ALLOWED_HEADERS: [&str; 3] = ["alg", "kid", "typ"];

/// Longest attacker-supplied string (header name, `kid`, `alg`) quoted in an error.
const MAX_QUOTED_LEN: usize = 64;

// ---------------------------------------------------------------------------
// Audience

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

// ---------------------------------------------------------------------------
// Errors

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

/// Why a JWT-SVID was rejected, or a validator could not be built.
///
/// Variants carry what an operator needs to act, never the token.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtSvidError {
    /// The token is longer than the limit; nothing was decoded.
    #[error("the token is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The token does not have exactly three dot-separated parts.
    #[error("a JWT-SVID has three dot-separated parts; this token has {count}")]
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

    /// The header has a parameter other than `alg`, `kid` and `typ`.
    #[error("header parameter {name:?} is not allowed in a JWT-SVID (only alg, kid, typ)")]
    UnexpectedHeader {
        /// The parameter's name (shortened if long).
        name: String,
    },

    /// The header or claims name a parameter twice.
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

    /// A header parameter is not a string.
    #[error("header parameter {name:?} must be a string")]
    InvalidHeaderType {
        /// The parameter.
        name: &'static str,
    },

    /// `alg` is not on the allow-list (ES256, ES384, RS256, PS256).
    #[error("algorithm {alg:?} is not accepted (allowed: ES256, ES384, RS256, PS256)")]
    UnsupportedAlgorithm {
        /// The token's `alg` (shortened if long).
        alg: String,
    },

    /// `typ` is present but neither `JWT` nor `JOSE`.
    #[error("token type {typ:?} is not accepted (allowed: JWT, JOSE)")]
    UnsupportedType {
        /// The token's `typ` (shortened if long).
        typ: String,
    },

    /// The header has no `kid`, so no key can be chosen.
    #[error("the token header has no \"kid\"; cannot choose a verification key")]
    MissingKeyId,

    /// No authority has the token's `kid`.
    #[error("no JWT authority of {trust_domain} has key ID {kid:?}")]
    UnknownKeyId {
        /// The token's `kid` (shortened if long).
        kid: String,
        /// The validator's trust domain.
        trust_domain: TrustDomain,
    },

    /// The token's `alg` cannot be used with the type of the key it names.
    #[error("algorithm {alg} cannot be verified with key {kid:?}, which is {key_type}")]
    AlgorithmKeyMismatch {
        /// The token's `alg`.
        alg: &'static str,
        /// The key ID.
        kid: String,
        /// The key's type, e.g. `EC P-256`.
        key_type: &'static str,
    },

    /// The signature does not verify with the named key.
    #[error("the token's signature does not verify with key {kid:?}")]
    BadSignature {
        /// The key ID.
        kid: String,
    },

    /// A required claim is absent.
    #[error("the token has no {claim:?} claim")]
    MissingClaim {
        /// The claim.
        claim: &'static str,
    },

    /// A claim has the wrong JSON type.
    #[error("claim {claim:?} must be {expected}")]
    InvalidClaimType {
        /// The claim.
        claim: &'static str,
        /// What it must be.
        expected: &'static str,
    },

    /// `sub` is not a valid SPIFFE ID.
    #[error("the token's subject is not a valid SPIFFE ID: {reason}")]
    BadSubject {
        /// Why. Part of this error's message, so not also its `source()`.
        reason: SpiffeIdError,
    },

    /// `sub` is a SPIFFE ID in another trust domain.
    #[error("the token's subject {actual} is not in trust domain {expected}")]
    WrongTrustDomain {
        /// The validator's trust domain.
        expected: TrustDomain,
        /// The subject.
        actual: SpiffeId,
    },

    /// `sub` is the trust domain's own SPIFFE ID, which names no workload
    /// (JWT-SVID.md §3.1: the subject is the SPIFFE ID of the workload).
    #[error("the token's subject {subject} is a trust domain, not a workload; it has no path")]
    SubjectWithoutPath {
        /// The subject.
        subject: SpiffeId,
    },

    /// `exp` has passed, beyond the leeway.
    #[error("the token expired at {} (now {})", Timestamp(*expired_at), Timestamp(*now))]
    Expired {
        /// The token's `exp`, Unix seconds.
        expired_at: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },

    /// `aud` does not contain the expected audience.
    #[error("the token is for audience {actual:?}, not {expected:?}")]
    WrongAudience {
        /// The audience the caller expected.
        expected: String,
        /// The token's audiences.
        actual: Vec<String>,
    },

    /// `nbf` is in the future, beyond the leeway.
    #[error("the token is not valid before {} (now {})", Timestamp(*not_before), Timestamp(*now))]
    NotYetValid {
        /// The token's `nbf`, Unix seconds.
        not_before: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },

    /// `iat` is in the future, beyond the leeway: the issuer's clock is off,
    /// or the token was forged for later use.
    #[error("the token claims to be issued at {}, in the future (now {})", Timestamp(*issued_at), Timestamp(*now))]
    IssuedInFuture {
        /// The token's `iat`, Unix seconds.
        issued_at: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },

    /// `exp` is further from `iat`, or from the time of the check, than the
    /// validator's maximum lifetime plus its leeway: no issuer this validator
    /// trusts should sign a token that long-lived.
    #[error(
        "the token expires at {}, {lifetime_secs}s after {measured_from} ({}); \
         at most {max_lifetime_secs}s (plus {leeway_secs}s leeway) is accepted",
        Timestamp(*expires_at),
        Timestamp(*start)
    )]
    LifetimeTooLong {
        /// The token's `exp`, Unix seconds.
        expires_at: i64,
        /// What the lifetime was counted from.
        measured_from: LifetimeStart,
        /// That moment, Unix seconds: the token's `iat` or the time of the check.
        start: i64,
        /// `expires_at - start`, in seconds (saturating at `i64::MAX`).
        lifetime_secs: i64,
        /// The validator's maximum lifetime, in seconds.
        max_lifetime_secs: i64,
        /// The validator's leeway, in seconds.
        leeway_secs: i64,
    },

    /// [`JwtSvidValidator::new`] was given no authorities.
    #[error("no JWT authorities given for {trust_domain}; nothing could be verified")]
    NoAuthorities {
        /// The trust domain.
        trust_domain: TrustDomain,
    },

    /// [`JwtSvidValidator::new`] was given two authorities with one key ID.
    #[error("two JWT authorities share the key ID {kid:?}")]
    DuplicateKeyId {
        /// The shared key ID.
        kid: String,
    },

    /// [`JwtSvidValidator::new`] was given an unusable public key.
    #[error("JWT authority {kid:?} is not a usable public key: {reason}")]
    InvalidKey {
        /// The key ID.
        kid: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// What a token's lifetime was counted from, in [`JwtSvidError::LifetimeTooLong`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeStart {
    /// The token's `iat`.
    IssuedAt,
    /// The time of the check: `exp` is too far ahead whatever `iat` says
    /// (or the token has none).
    Now,
}

impl fmt::Display for LifetimeStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IssuedAt => "its iat",
            Self::Now => "the time of the check",
        })
    }
}

/// Shortens an attacker-supplied string before it goes into an error.
fn quoted(s: &str) -> String {
    if s.len() <= MAX_QUOTED_LEN {
        return s.to_owned();
    }
    let mut end = MAX_QUOTED_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Formats Unix seconds as `2026-01-02T03:04:05Z (unix 1767323045)`.
struct Timestamp(i64);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        if (0..=9999).contains(&year) {
            write!(
                f,
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z (unix {})",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                self.0
            )
        } else {
            write!(f, "unix {}", self.0)
        }
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01.
///
/// Counts in 400-year eras of 146 097 days, with years starting on 1 March so
/// the leap day falls at the end of the year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097); // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------
// Keys

/// The JWS algorithms this crate accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Es256,
    Es384,
    Rs256,
    Ps256,
}

impl Algorithm {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "ES384" => Some(Self::Es384),
            "RS256" => Some(Self::Rs256),
            "PS256" => Some(Self::Ps256),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
        }
    }
}

/// A JWT authority's public key, parsed once for verification.
#[derive(Clone)]
pub(crate) enum VerificationKey {
    EcP256(ParsedPublicKey),
    EcP384(ParsedPublicKey),
    Rsa {
        pkcs1: ParsedPublicKey,
        pss: ParsedPublicKey,
    },
}

impl VerificationKey {
    /// Parses and checks a public key.
    ///
    /// Errors say what is wrong (for [`JwtSvidError::InvalidKey`] and the
    /// bundle's `InvalidPublicKey`).
    pub(crate) fn new(key: &JwtPublicKey) -> Result<Self, &'static str> {
        match key {
            JwtPublicKey::EcP256 { x, y } => {
                let point = [&[0x04][..], x, y].concat();
                ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .map(Self::EcP256)
                    .map_err(|_| "the point is not on the P-256 curve")
            }
            JwtPublicKey::EcP384 { x, y } => {
                let point = [&[0x04][..], x, y].concat();
                ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point)
                    .map(Self::EcP384)
                    .map_err(|_| "the point is not on the P-384 curve")
            }
            JwtPublicKey::Rsa { n, e } => {
                let bits = bit_length(n);
                if !(2048..=8192).contains(&bits) {
                    return Err("the RSA modulus must be 2048 to 8192 bits");
                }
                let der = rsa_public_key_der(n, e);
                let parse =
                    |alg| ParsedPublicKey::new(alg, &der).map_err(|_| "not a valid RSA public key");
                Ok(Self::Rsa {
                    pkcs1: parse(&RSA_PKCS1_2048_8192_SHA256)?,
                    pss: parse(&RSA_PSS_2048_8192_SHA256)?,
                })
            }
        }
    }

    fn key_type(&self) -> &'static str {
        match self {
            Self::EcP256(_) => "EC P-256",
            Self::EcP384(_) => "EC P-384",
            Self::Rsa { .. } => "RSA",
        }
    }

    /// The parsed key for `alg`, or `None` if this key cannot verify it.
    fn for_algorithm(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        match (self, alg) {
            (Self::EcP256(key), Algorithm::Es256) | (Self::EcP384(key), Algorithm::Es384) => {
                Some(key)
            }
            (Self::Rsa { pkcs1, .. }, Algorithm::Rs256) => Some(pkcs1),
            (Self::Rsa { pss, .. }, Algorithm::Ps256) => Some(pss),
            _ => None,
        }
    }
}

fn bit_length(n: &[u8]) -> u32 {
    let n = &n[n.iter().position(|&b| b != 0).unwrap_or(n.len())..];
    match n.first() {
        None => 0,
        Some(&top) => {
            let len = u32::try_from(n.len()).unwrap_or(u32::MAX / 8);
            (len - 1) * 8 + (8 - top.leading_zeros())
        }
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`
/// (RFC 8017 A.1.1), which aws-lc-rs parses.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = der_unsigned_integer(n);
    body.extend(der_unsigned_integer(e));
    der_tagged(0x30, &body)
}

fn der_unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let bytes = &bytes[bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len())..];
    let mut content = Vec::with_capacity(bytes.len() + 1);
    // A set top bit would read as negative; zero needs one content byte.
    if bytes.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(bytes);
    der_tagged(0x02, &content)
}

fn der_tagged(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    match u8::try_from(len) {
        // Short form: one byte up to 127.
        Ok(short) if short < 0x80 => out.push(short),
        // Long form: 0x80 | byte count, then the length big-endian.
        _ => {
            let len_bytes = len.to_be_bytes();
            let skip = len_bytes.iter().position(|&b| b != 0).unwrap_or(0);
            let significant = &len_bytes[skip..];
            // At most size_of::<usize>() bytes, so the count fits in 7 bits.
            out.push(0x80 | significant.len() as u8);
            out.extend_from_slice(significant);
        }
    }
    out.extend_from_slice(content);
    out
}

// ---------------------------------------------------------------------------
// Token structure

/// The header of a JWT-SVID, as far as it was checked.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtHeader {
    /// The signing algorithm, e.g. `ES256`.
    pub alg: String,
    /// The key ID, if any.
    pub kid: Option<String>,
    /// The token type, if any.
    pub typ: Option<String>,
}

/// A token split into its parts; borrows the token.
struct Parts<'a> {
    header: &'a str,
    claims: &'a str,
    signature: &'a str,
    /// `header.claims`, the bytes the signature covers.
    signing_input: &'a str,
}

/// Size limit, then shape: three parts of base64url characters.
fn split_token(token: &str, max_bytes: usize) -> Result<Parts<'_>, JwtSvidError> {
    if token.len() > max_bytes {
        return Err(JwtSvidError::TooLarge {
            len: token.len(),
            max: max_bytes,
        });
    }
    let count = token.split('.').count();
    let mut pieces = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(JwtSvidError::WrongPartCount { count });
    };
    for (part, text) in [
        (TokenPart::Header, header),
        (TokenPart::Claims, claims),
        (TokenPart::Signature, signature),
    ] {
        let is_base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if !text.bytes().all(is_base64url) {
            return Err(JwtSvidError::InvalidBase64 { part });
        }
    }
    Ok(Parts {
        header,
        claims,
        signature,
        signing_input: &token[..header.len() + 1 + claims.len()],
    })
}

fn decode_part(text: &str, part: TokenPart) -> Result<Vec<u8>, JwtSvidError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwtSvidError::InvalidBase64 { part })
}

/// A JSON object read without letting a repeated name silently win: two
/// parsers that pick different duplicates are how token confusion starts.
struct UniqueObject {
    members: Map<String, Value>,
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut members = Map::new();
                let mut duplicate = None;
                while let Some((name, value)) = access.next_entry::<String, Value>()? {
                    if members.contains_key(&name) && duplicate.is_none() {
                        duplicate = Some(name.clone());
                    }
                    members.insert(name, value);
                }
                Ok(UniqueObject { members, duplicate })
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Decodes one part as a JSON object with unique member names.
fn decode_object(text: &str, part: TokenPart) -> Result<Map<String, Value>, JwtSvidError> {
    let bytes = decode_part(text, part)?;
    let object: UniqueObject = serde_json::from_slice(&bytes).map_err(|e| {
        if e.is_data() {
            JwtSvidError::NotAnObject { part }
        } else {
            JwtSvidError::InvalidJson { part }
        }
    })?;
    if let Some(name) = object.duplicate {
        return Err(JwtSvidError::DuplicateMember {
            part,
            name: quoted(&name),
        });
    }
    Ok(object.members)
}

/// Decodes the header and checks its parameters' names and types, and `typ`.
/// Does not judge `alg`, so callers decide when that happens.
fn parse_header(text: &str) -> Result<JwtHeader, JwtSvidError> {
    let header = decode_object(text, TokenPart::Header)?;
    if let Some(name) = header
        .keys()
        .find(|name| !ALLOWED_HEADERS.contains(&name.as_str()))
    {
        return Err(JwtSvidError::UnexpectedHeader { name: quoted(name) });
    }
    let string = |name: &'static str| match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtSvidError::InvalidHeaderType { name }),
    };
    let alg = string("alg")?.ok_or(JwtSvidError::MissingAlgorithm)?;
    let kid = string("kid")?;
    let typ = string("typ")?;
    Ok(JwtHeader { alg, kid, typ })
}

/// Decodes a token's header and claims WITHOUT verifying its signature or
/// any claim: for display and audit only, never for a security decision.
///
/// Applies the default size limit ([`DEFAULT_MAX_TOKEN_BYTES`]) and the same
/// structure checks as [`JwtSvidValidator::validate`]: three base64url parts,
/// a header with only `alg`, `kid` and `typ`, JSON objects without repeated
/// names. The algorithm is reported, not judged.
///
/// # Errors
///
/// The [`JwtSvidError`] structure variants: `TooLarge`, `WrongPartCount`,
/// `InvalidBase64`, `InvalidJson`, `NotAnObject`, `UnexpectedHeader`,
/// `DuplicateMember`, `MissingAlgorithm`, `InvalidHeaderType`.
pub fn insecure_decode_unverified(token: &str) -> Result<(JwtHeader, Value), JwtSvidError> {
    let parts = split_token(token, DEFAULT_MAX_TOKEN_BYTES)?;
    let header = parse_header(parts.header)?;
    let claims = decode_object(parts.claims, TokenPart::Claims)?;
    Ok((header, Value::Object(claims)))
}

// ---------------------------------------------------------------------------
// Validation

/// What a valid JWT-SVID asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedJwtSvid {
    /// The subject, in the validator's trust domain.
    pub spiffe_id: SpiffeId,
    /// Every audience in the token (one, if the issuer follows the spec's advice).
    pub audience: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// `iat`, Unix seconds, if present.
    pub issued_at: Option<i64>,
    /// `jti`, if present (for replay tracking and revocation).
    pub jti: Option<String>,
    /// The `kid` of the key that verified it.
    pub key_id: String,
}

/// Validates JWT-SVIDs of one trust domain. Build it once per bundle
/// update; it holds the parsed keys (a clone shares nothing mutable).
#[derive(Clone)]
pub struct JwtSvidValidator {
    trust_domain: TrustDomain,
    keys: HashMap<String, VerificationKey>,
    leeway_secs: i64,
    max_lifetime_secs: i64,
    max_token_bytes: usize,
}

impl fmt::Debug for JwtSvidValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key_ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        key_ids.sort_unstable();
        f.debug_struct("JwtSvidValidator")
            .field("trust_domain", &self.trust_domain)
            .field("key_ids", &key_ids)
            .field("leeway_secs", &self.leeway_secs)
            .field("max_lifetime_secs", &self.max_lifetime_secs)
            .field("max_token_bytes", &self.max_token_bytes)
            .finish()
    }
}

impl JwtSvidValidator {
    /// A validator for `trust_domain` trusting `authorities`, with a 30 s
    /// leeway, a 1 h maximum lifetime ([`MAX_JWT_SVID_LIFETIME`]) and an
    /// 8 KiB token limit.
    ///
    /// # Errors
    ///
    /// [`JwtSvidError::NoAuthorities`] if `authorities` is empty,
    /// [`JwtSvidError::DuplicateKeyId`] if two share a key ID, and
    /// [`JwtSvidError::InvalidKey`] if a key is unusable (EC point off its
    /// curve, RSA modulus outside 2048–8192 bits).
    pub fn new(
        trust_domain: TrustDomain,
        authorities: &[JwtAuthority],
    ) -> Result<Self, JwtSvidError> {
        if authorities.is_empty() {
            return Err(JwtSvidError::NoAuthorities { trust_domain });
        }
        let mut keys = HashMap::with_capacity(authorities.len());
        for authority in authorities {
            let kid = &authority.key_id;
            let key = VerificationKey::new(&authority.public_key).map_err(|reason| {
                JwtSvidError::InvalidKey {
                    kid: kid.clone(),
                    reason,
                }
            })?;
            if keys.insert(kid.clone(), key).is_some() {
                return Err(JwtSvidError::DuplicateKeyId { kid: kid.clone() });
            }
        }
        Ok(Self {
            trust_domain,
            keys,
            leeway_secs: duration_secs(DEFAULT_LEEWAY),
            max_lifetime_secs: duration_secs(MAX_JWT_SVID_LIFETIME),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        })
    }

    /// Sets the clock leeway for `exp`, `nbf` and `iat` (default 30 s).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = duration_secs(leeway);
        self
    }

    /// Sets the longest lifetime accepted (default [`MAX_JWT_SVID_LIFETIME`],
    /// 1 h): `exp` may be at most this much, plus the leeway, after the time
    /// of the check, and after `iat` when the token has one. Set it to the
    /// longest TTL the issuers you trust are configured to use.
    #[must_use]
    pub fn with_max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.max_lifetime_secs = duration_secs(max_lifetime);
        self
    }

    /// Sets the token size limit in bytes (default 8 KiB).
    #[must_use]
    pub fn with_max_token_bytes(mut self, max: usize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// The trust domain this validator accepts subjects from.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Validates `token` for `audience` at `now_unix` (Unix seconds).
    ///
    /// # Errors
    ///
    /// The first failed check, in the order the [module docs](self) give.
    pub fn validate(
        &self,
        token: &str,
        audience: &Audience,
        now_unix: i64,
    ) -> Result<ValidatedJwtSvid, JwtSvidError> {
        let parts = split_token(token, self.max_token_bytes)?;
        let key_id = self.verify_signature(&parts)?;
        // Claims are only parsed once the signature says who wrote them.
        let claims = decode_object(parts.claims, TokenPart::Claims)?;
        let mut svid = self.check_claims(&claims, audience, now_unix)?;
        svid.key_id = key_id;
        Ok(svid)
    }

    /// Header checks, key choice and signature verification; returns the `kid`.
    fn verify_signature(&self, parts: &Parts<'_>) -> Result<String, JwtSvidError> {
        let header = parse_header(parts.header)?;
        // The allow-list comes first: nothing about the key or signature is
        // looked at for an algorithm we do not accept (RFC 8725 §3.1).
        let alg = Algorithm::from_name(&header.alg).ok_or_else(|| {
            JwtSvidError::UnsupportedAlgorithm {
                alg: quoted(&header.alg),
            }
        })?;
        if let Some(typ) = header.typ.as_deref()
            && typ != "JWT"
            && typ != "JOSE"
        {
            return Err(JwtSvidError::UnsupportedType { typ: quoted(typ) });
        }
        let kid = header.kid.ok_or(JwtSvidError::MissingKeyId)?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| JwtSvidError::UnknownKeyId {
                kid: quoted(&kid),
                trust_domain: self.trust_domain.clone(),
            })?;
        let parsed = key
            .for_algorithm(alg)
            .ok_or_else(|| JwtSvidError::AlgorithmKeyMismatch {
                alg: alg.name(),
                kid: kid.clone(),
                key_type: key.key_type(),
            })?;
        let signature = decode_part(parts.signature, TokenPart::Signature)?;
        parsed
            .verify_sig(parts.signing_input.as_bytes(), &signature)
            .map_err(|_| JwtSvidError::BadSignature { kid: kid.clone() })?;
        Ok(kid)
    }

    /// Claim checks; `key_id` is left for the caller to fill in.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        audience: &Audience,
        now: i64,
    ) -> Result<ValidatedJwtSvid, JwtSvidError> {
        let spiffe_id = self.check_subject(claims)?;

        let expires_at =
            numeric_date(claims, "exp")?.ok_or(JwtSvidError::MissingClaim { claim: "exp" })?;
        if now > expires_at.saturating_add(self.leeway_secs) {
            return Err(JwtSvidError::Expired {
                expired_at: expires_at,
                now,
            });
        }

        let audiences = audiences(claims)?;
        if !audiences.iter().any(|a| a == audience.as_str()) {
            return Err(JwtSvidError::WrongAudience {
                expected: audience.as_str().to_owned(),
                actual: audiences,
            });
        }

        let latest_allowed = now.saturating_add(self.leeway_secs);
        if let Some(not_before) = numeric_date(claims, "nbf")?
            && not_before > latest_allowed
        {
            return Err(JwtSvidError::NotYetValid { not_before, now });
        }
        let issued_at = numeric_date(claims, "iat")?;
        if let Some(issued_at) = issued_at
            && issued_at > latest_allowed
        {
            return Err(JwtSvidError::IssuedInFuture { issued_at, now });
        }
        self.check_lifetime(expires_at, issued_at, now)?;

        let jti = match claims.get("jti") {
            None => None,
            Some(Value::String(jti)) => Some(jti.clone()),
            Some(_) => {
                return Err(JwtSvidError::InvalidClaimType {
                    claim: "jti",
                    expected: "a string",
                });
            }
        };

        Ok(ValidatedJwtSvid {
            spiffe_id,
            audience: audiences,
            expires_at,
            issued_at,
            jti,
            key_id: String::new(),
        })
    }

    fn check_subject(&self, claims: &Map<String, Value>) -> Result<SpiffeId, JwtSvidError> {
        let subject = match claims.get("sub") {
            None => return Err(JwtSvidError::MissingClaim { claim: "sub" }),
            Some(Value::String(sub)) => sub,
            Some(_) => {
                return Err(JwtSvidError::InvalidClaimType {
                    claim: "sub",
                    expected: "a string",
                });
            }
        };
        let spiffe_id =
            SpiffeId::parse(subject).map_err(|reason| JwtSvidError::BadSubject { reason })?;
        if !spiffe_id.is_member_of(&self.trust_domain) {
            return Err(JwtSvidError::WrongTrustDomain {
                expected: self.trust_domain.clone(),
                actual: spiffe_id,
            });
        }
        // The parser refuses a trailing '/', so an empty path is the only
        // way to name the trust domain itself.
        if spiffe_id.path().is_empty() {
            return Err(JwtSvidError::SubjectWithoutPath { subject: spiffe_id });
        }
        Ok(spiffe_id)
    }

    /// `exp` no further than the maximum lifetime plus the leeway from now
    /// and from `iat`. The leeway covers a validator whose clock runs behind
    /// the issuer's; the `iat` check catches a token minted too long-lived
    /// even when it is presented late in its life.
    fn check_lifetime(
        &self,
        expires_at: i64,
        issued_at: Option<i64>,
        now: i64,
    ) -> Result<(), JwtSvidError> {
        let limit = self.max_lifetime_secs.saturating_add(self.leeway_secs);
        let starts = [
            Some((LifetimeStart::Now, now)),
            issued_at.map(|issued_at| (LifetimeStart::IssuedAt, issued_at)),
        ];
        for (measured_from, start) in starts.into_iter().flatten() {
            // Saturating: with `exp` near i64::MAX and a negative start the
            // difference overflows, and "too long" is then the right answer.
            let lifetime_secs = expires_at.saturating_sub(start);
            if lifetime_secs > limit {
                return Err(JwtSvidError::LifetimeTooLong {
                    expires_at,
                    measured_from,
                    start,
                    lifetime_secs,
                    max_lifetime_secs: self.max_lifetime_secs,
                    leeway_secs: self.leeway_secs,
                });
            }
        }
        Ok(())
    }
}

fn duration_secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// An optional NumericDate claim, which must be a JSON integer (RFC 7519
/// allows fractions; JWT-SVID issuers do not use them, and strings or floats
/// here are a sign of a confused or hostile issuer).
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<i64>, JwtSvidError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(_) => Err(JwtSvidError::InvalidClaimType {
            claim,
            expected: "an integer NumericDate (seconds since the Unix epoch)",
        }),
    }
}

/// `aud`: a string, or a non-empty array of strings.
fn audiences(claims: &Map<String, Value>) -> Result<Vec<String>, JwtSvidError> {
    const EXPECTED: &str = "a string or a non-empty array of strings";
    let invalid = JwtSvidError::InvalidClaimType {
        claim: "aud",
        expected: EXPECTED,
    };
    match claims.get("aud") {
        None => Err(JwtSvidError::MissingClaim { claim: "aud" }),
        Some(Value::String(aud)) => Ok(vec![aud.clone()]),
        Some(Value::Array(values)) if !values.is_empty() => values
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(invalid.clone()))
            .collect(),
        Some(_) => Err(invalid),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        EcdsaSigningAlgorithm, KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair,
    };
    use serde_json::json;

    const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const SUB: &str = "spiffe://example.org/ns/billing/sa/api";

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn aud(s: &str) -> Audience {
        Audience::new(s).unwrap()
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// An ECDSA signing key and the bundle entry for its public half.
    struct EcSigner {
        key: EcdsaKeyPair,
        kid: String,
    }

    impl EcSigner {
        fn new(alg: &'static EcdsaSigningAlgorithm, kid: &str) -> Self {
            Self {
                key: EcdsaKeyPair::generate(alg).unwrap(),
                kid: kid.to_owned(),
            }
        }

        fn p256(kid: &str) -> Self {
            Self::new(&ECDSA_P256_SHA256_FIXED_SIGNING, kid)
        }

        fn authority(&self) -> JwtAuthority {
            // The uncompressed point: 0x04 || x || y.
            let point = self.key.public_key().as_ref();
            let half = (point.len() - 1) / 2;
            let (x, y) = (&point[1..=half], &point[1 + half..]);
            let public_key = match half {
                32 => JwtPublicKey::EcP256 {
                    x: x.try_into().unwrap(),
                    y: y.try_into().unwrap(),
                },
                48 => JwtPublicKey::EcP384 {
                    x: x.try_into().unwrap(),
                    y: y.try_into().unwrap(),
                },
                _ => unreachable!(),
            };
            JwtAuthority {
                key_id: self.kid.clone(),
                public_key,
            }
        }

        /// Signs `header` and `claims` as given, JSON-encoded.
        fn sign(&self, header: &Value, claims: &Value) -> String {
            let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
            let sig = self
                .key
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap();
            format!("{input}.{}", b64(sig))
        }

        /// An ES256 token with this key's kid.
        fn token(&self, claims: &Value) -> String {
            self.sign(
                &json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"}),
                claims,
            )
        }
    }

    fn claims() -> Value {
        json!({
            "sub": SUB,
            "aud": "billing",
            "exp": NOW + 300,
            "iat": NOW - 10,
            "jti": "6e0d2d1c",
        })
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    fn setup() -> (EcSigner, JwtSvidValidator) {
        let signer = EcSigner::p256("k1");
        let validator = JwtSvidValidator::new(td(), &[signer.authority()]).unwrap();
        (signer, validator)
    }

    fn check(validator: &JwtSvidValidator, token: &str) -> Result<ValidatedJwtSvid, JwtSvidError> {
        validator.validate(token, &aud("billing"), NOW)
    }

    #[test]
    fn valid_token_is_accepted_with_its_claims() {
        let (signer, validator) = setup();
        let svid = check(&validator, &signer.token(&claims())).unwrap();
        assert_eq!(
            svid,
            ValidatedJwtSvid {
                spiffe_id: SpiffeId::parse(SUB).unwrap(),
                audience: vec!["billing".into()],
                expires_at: NOW + 300,
                issued_at: Some(NOW - 10),
                jti: Some("6e0d2d1c".into()),
                key_id: "k1".into(),
            }
        );
        // Minimal token: sub, aud, exp; no typ.
        let minimal = json!({"sub": SUB, "aud": "billing", "exp": NOW + 1});
        let token = signer.sign(&json!({"alg": "ES256", "kid": "k1"}), &minimal);
        let svid = check(&validator, &token).unwrap();
        assert_eq!((svid.issued_at, svid.jti), (None, None));
        let token = signer.sign(
            &json!({"alg": "ES256", "kid": "k1", "typ": "JOSE"}),
            &minimal,
        );
        assert!(check(&validator, &token).is_ok());
    }

    #[test]
    fn expiry_honours_the_leeway() {
        let (signer, validator) = setup();
        let at = |exp: i64| {
            check(
                &validator,
                &signer.token(&with(claims(), "exp", exp.into())),
            )
        };
        assert!(at(NOW).is_ok());
        assert!(at(NOW - 30).is_ok(), "within the 30 s leeway");
        assert_eq!(
            at(NOW - 31),
            Err(JwtSvidError::Expired {
                expired_at: NOW - 31,
                now: NOW
            })
        );
        let strict = validator.with_leeway(Duration::ZERO);
        let token = signer.token(&with(claims(), "exp", (NOW - 1).into()));
        assert!(matches!(
            check(&strict, &token),
            Err(JwtSvidError::Expired { .. })
        ));
        let token = signer.token(&with(claims(), "exp", NOW.into()));
        assert!(check(&strict, &token).is_ok());
    }

    /// What `validate` says of a token with `exp` and, if given, `iat`.
    fn lifetime_check(
        signer: &EcSigner,
        validator: &JwtSvidValidator,
        exp: i64,
        iat: Option<i64>,
    ) -> Result<ValidatedJwtSvid, JwtSvidError> {
        let claims = with(claims(), "exp", exp.into());
        let claims = match iat {
            Some(iat) => with(claims, "iat", iat.into()),
            None => without(claims, "iat"),
        };
        check(validator, &signer.token(&claims))
    }

    fn too_long(
        exp: i64,
        measured_from: LifetimeStart,
        start: i64,
        max_lifetime_secs: i64,
        leeway_secs: i64,
    ) -> Result<ValidatedJwtSvid, JwtSvidError> {
        Err(JwtSvidError::LifetimeTooLong {
            expires_at: exp,
            measured_from,
            start,
            lifetime_secs: exp.saturating_sub(start),
            max_lifetime_secs,
            leeway_secs,
        })
    }

    #[test]
    fn exp_at_most_the_maximum_lifetime_plus_leeway_ahead_of_now() {
        let (signer, validator) = setup();
        let hour = 3600;
        assert_eq!(duration_secs(MAX_JWT_SVID_LIFETIME), hour);
        // The edge: one hour plus the 30 s leeway is accepted, with and without iat.
        assert!(lifetime_check(&signer, &validator, NOW + hour + 30, Some(NOW)).is_ok());
        assert!(lifetime_check(&signer, &validator, NOW + hour + 30, None).is_ok());
        // One second more is not, whatever iat says.
        for iat in [Some(NOW), Some(NOW + 30), None] {
            assert_eq!(
                lifetime_check(&signer, &validator, NOW + hour + 31, iat),
                too_long(NOW + hour + 31, LifetimeStart::Now, NOW, hour, 30),
                "iat {iat:?}"
            );
        }
        // The finding: a validly signed token that never expires.
        for iat in [Some(NOW), None] {
            assert_eq!(
                lifetime_check(&signer, &validator, i64::MAX, iat),
                too_long(i64::MAX, LifetimeStart::Now, NOW, hour, 30),
                "iat {iat:?}"
            );
        }
    }

    #[test]
    fn exp_at_most_the_maximum_lifetime_plus_leeway_after_iat() {
        let (signer, validator) = setup();
        let hour = 3600;
        // 700 s left is fine from now; what counts is how long it was minted for.
        let exp = NOW + 700;
        assert!(lifetime_check(&signer, &validator, exp, Some(exp - hour - 30)).is_ok());
        assert_eq!(
            lifetime_check(&signer, &validator, exp, Some(exp - hour - 31)),
            too_long(exp, LifetimeStart::IssuedAt, exp - hour - 31, hour, 30)
        );
        // An iat far in the past cannot overflow the subtraction into acceptance.
        assert_eq!(
            lifetime_check(&signer, &validator, exp, Some(i64::MIN)),
            too_long(exp, LifetimeStart::IssuedAt, i64::MIN, hour, 30)
        );
        assert_eq!(
            too_long(exp, LifetimeStart::IssuedAt, i64::MIN, hour, 30)
                .unwrap_err()
                .to_string(),
            format!(
                "the token expires at {}, {}s after its iat (unix {}); \
                 at most 3600s (plus 30s leeway) is accepted",
                Timestamp(exp),
                i64::MAX,
                i64::MIN
            )
        );
    }

    #[test]
    fn the_maximum_lifetime_is_settable() {
        let (signer, validator) = setup();
        let ten_minutes = validator
            .clone()
            .with_max_lifetime(Duration::from_secs(600));
        assert!(lifetime_check(&signer, &ten_minutes, NOW + 630, Some(NOW)).is_ok());
        assert_eq!(
            lifetime_check(&signer, &ten_minutes, NOW + 631, Some(NOW)),
            too_long(NOW + 631, LifetimeStart::Now, NOW, 600, 30)
        );
        let strict = ten_minutes.with_leeway(Duration::ZERO);
        assert!(lifetime_check(&signer, &strict, NOW + 600, Some(NOW)).is_ok());
        assert_eq!(
            lifetime_check(&signer, &strict, NOW + 601, Some(NOW)),
            too_long(NOW + 601, LifetimeStart::Now, NOW, 600, 0)
        );
        // A longer maximum accepts what the default refuses.
        let day = validator.with_max_lifetime(Duration::from_secs(86_400));
        assert!(lifetime_check(&signer, &day, NOW + 86_400, Some(NOW)).is_ok());
        assert!(lifetime_check(&signer, &day, NOW + 86_431, Some(NOW)).is_err());
    }

    #[test]
    fn iss_is_neither_required_nor_judged() {
        let (signer, validator) = setup();
        // Mayfly's tokens carry `iss` since it was added; earlier ones do not.
        assert!(check(&validator, &signer.token(&claims())).is_ok());
        for iss in ["https://mayfly.example.org", "urn:other-issuer"] {
            let token = signer.token(&with(claims(), "iss", iss.into()));
            assert!(check(&validator, &token).is_ok(), "{iss}");
        }
    }

    #[test]
    fn a_subject_without_a_path_names_no_workload() {
        let (signer, validator) = setup();
        let subject = |sub: &str| {
            check(
                &validator,
                &signer.token(&with(claims(), "sub", sub.into())),
            )
        };
        assert!(subject("spiffe://example.org/w").is_ok());
        assert_eq!(
            subject("spiffe://example.org"),
            Err(JwtSvidError::SubjectWithoutPath {
                subject: SpiffeId::parse("spiffe://example.org").unwrap()
            })
        );
        // A trailing slash is not a way around it.
        assert_eq!(
            subject("spiffe://example.org/"),
            Err(JwtSvidError::BadSubject {
                reason: SpiffeIdError::TrailingSlash
            })
        );
        // Another trust domain's own ID is refused for its trust domain first.
        assert!(matches!(
            subject("spiffe://other.org"),
            Err(JwtSvidError::WrongTrustDomain { .. })
        ));
    }

    #[test]
    fn alg_none_is_refused_before_anything_else() {
        let (signer, validator) = setup();
        assert!(check(&validator, &signer.token(&claims())).is_ok());
        let unsigned = format!(
            "{}.{}.",
            b64(json!({"alg": "none"}).to_string()),
            b64(claims().to_string())
        );
        assert_eq!(
            check(&validator, &unsigned),
            Err(JwtSvidError::UnsupportedAlgorithm { alg: "none".into() })
        );
        let with_kid = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "kid": "k1", "typ": "JWT"}).to_string()),
            b64(claims().to_string())
        );
        assert_eq!(
            check(&validator, &with_kid),
            Err(JwtSvidError::UnsupportedAlgorithm { alg: "none".into() })
        );
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let (signer, validator) = setup();
        assert!(check(&validator, &signer.token(&claims())).is_ok());
        // The classic key-confusion attack: HMAC keyed with the public key.
        let public = signer.key.public_key().as_ref().to_vec();
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "HS256", "kid": "k1", "typ": "JWT"}).to_string()),
            b64(claims().to_string())
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &public);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        let token = format!("{input}.{}", b64(tag));
        assert_eq!(
            check(&validator, &token),
            Err(JwtSvidError::UnsupportedAlgorithm {
                alg: "HS256".into()
            })
        );
    }

    #[test]
    fn key_id_must_be_present_and_known() {
        let (signer, validator) = setup();
        assert!(check(&validator, &signer.token(&claims())).is_ok());
        let token = signer.sign(&json!({"alg": "ES256", "typ": "JWT"}), &claims());
        assert_eq!(check(&validator, &token), Err(JwtSvidError::MissingKeyId));
        let token = signer.sign(&json!({"alg": "ES256", "kid": "k2"}), &claims());
        assert_eq!(
            check(&validator, &token),
            Err(JwtSvidError::UnknownKeyId {
                kid: "k2".into(),
                trust_domain: td()
            })
        );
        let token = signer.sign(&json!({"alg": "ES256", "kid": 1}), &claims());
        assert_eq!(
            check(&validator, &token),
            Err(JwtSvidError::InvalidHeaderType { name: "kid" })
        );
    }

    #[test]
    fn algorithm_must_fit_the_key_type() {
        let (signer, validator) = setup();
        assert!(check(&validator, &signer.token(&claims())).is_ok());
        for alg in ["RS256", "PS256", "ES384"] {
            let token = signer.sign(&json!({"alg": alg, "kid": "k1"}), &claims());
            assert_eq!(
                check(&validator, &token),
                Err(JwtSvidError::AlgorithmKeyMismatch {
                    alg: Algorithm::from_name(alg).unwrap().name(),
                    kid: "k1".into(),
                    key_type: "EC P-256",
                }),
                "{alg}"
            );
        }
    }

    #[test]
    fn tampered_payload_fails_the_signature() {
        let (signer, validator) = setup();
        let token = signer.token(&claims());
        assert!(check(&validator, &token).is_ok());
        let [header, _, signature] = token.split('.').collect::<Vec<_>>()[..] else {
            unreachable!()
        };
        let forged = with(claims(), "sub", "spiffe://example.org/admin".into());
        let tampered = format!("{header}.{}.{signature}", b64(forged.to_string()));
        assert_eq!(
            check(&validator, &tampered),
            Err(JwtSvidError::BadSignature { kid: "k1".into() })
        );
        // Signed by another key that claims the same kid.
        let impostor = EcSigner::p256("k1");
        assert_eq!(
            check(&validator, &impostor.token(&claims())),
            Err(JwtSvidError::BadSignature { kid: "k1".into() })
        );
        let truncated = format!("{header}.{}.{}", token.split('.').nth(1).unwrap(), "");
        assert_eq!(
            check(&validator, &truncated),
            Err(JwtSvidError::BadSignature { kid: "k1".into() })
        );
    }

    #[test]
    fn audience_must_contain_the_expected_one() {
        let (signer, validator) = setup();
        let token = |aud: Value| signer.token(&with(claims(), "aud", aud));
        assert!(check(&validator, &token("billing".into())).is_ok());
        assert_eq!(
            check(&validator, &token("reports".into())),
            Err(JwtSvidError::WrongAudience {
                expected: "billing".into(),
                actual: vec!["reports".into()]
            })
        );
        let svid = check(&validator, &token(json!(["reports", "billing"]))).unwrap();
        assert_eq!(svid.audience, ["reports", "billing"]);
        assert_eq!(
            check(&validator, &token(json!(["reports", "ledger"]))),
            Err(JwtSvidError::WrongAudience {
                expected: "billing".into(),
                actual: vec!["reports".into(), "ledger".into()]
            })
        );
        // Case matters: audiences are compared exactly.
        assert!(matches!(
            check(&validator, &token("Billing".into())),
            Err(JwtSvidError::WrongAudience { .. })
        ));
        for bad in [json!([]), json!(["billing", 3]), json!(7), Value::Null] {
            assert!(
                matches!(
                    check(&validator, &token(bad.clone())),
                    Err(JwtSvidError::InvalidClaimType { claim: "aud", .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            check(&validator, &signer.token(&without(claims(), "aud"))),
            Err(JwtSvidError::MissingClaim { claim: "aud" })
        );
    }

    #[test]
    fn exp_is_required_and_an_integer() {
        let (signer, validator) = setup();
        assert!(check(&validator, &signer.token(&claims())).is_ok());
        assert_eq!(
            check(&validator, &signer.token(&without(claims(), "exp"))),
            Err(JwtSvidError::MissingClaim { claim: "exp" })
        );
        for bad in [
            json!((NOW + 300).to_string()),
            json!(NOW as f64 + 300.5),
            json!(1.8e9),
            json!(u64::MAX),
            Value::Null,
        ] {
            assert!(
                matches!(
                    check(
                        &validator,
                        &signer.token(&with(claims(), "exp", bad.clone()))
                    ),
                    Err(JwtSvidError::InvalidClaimType { claim: "exp", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn nbf_and_iat_must_not_be_in_the_future() {
        let (signer, validator) = setup();
        let token = |name: &str, t: i64| signer.token(&with(claims(), name, t.into()));
        assert!(check(&validator, &token("nbf", NOW + 30)).is_ok());
        assert_eq!(
            check(&validator, &token("nbf", NOW + 31)),
            Err(JwtSvidError::NotYetValid {
                not_before: NOW + 31,
                now: NOW
            })
        );
        assert!(check(&validator, &token("iat", NOW + 30)).is_ok());
        assert_eq!(
            check(&validator, &token("iat", NOW + 3600)),
            Err(JwtSvidError::IssuedInFuture {
                issued_at: NOW + 3600,
                now: NOW
            })
        );
        assert!(matches!(
            check(
                &validator,
                &signer.token(&with(claims(), "iat", "yesterday".into()))
            ),
            Err(JwtSvidError::InvalidClaimType { claim: "iat", .. })
        ));
        assert!(matches!(
            check(
                &validator,
                &signer.token(&with(claims(), "nbf", json!(1.5)))
            ),
            Err(JwtSvidError::InvalidClaimType { claim: "nbf", .. })
        ));
    }

    #[test]
    fn only_alg_kid_typ_headers_are_allowed() {
        let (signer, validator) = setup();
        assert!(check(&validator, &signer.token(&claims())).is_ok());
        for name in ["jku", "jwk", "x5u", "x5c", "crit", "cty", "b64"] {
            let mut header = json!({"alg": "ES256", "kid": "k1"});
            header[name] = json!("https://attacker.example/keys");
            assert_eq!(
                check(&validator, &signer.sign(&header, &claims())),
                Err(JwtSvidError::UnexpectedHeader { name: name.into() }),
                "{name}"
            );
        }
        let token = signer.sign(
            &json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
            &claims(),
        );
        assert_eq!(
            check(&validator, &token),
            Err(JwtSvidError::UnsupportedType {
                typ: "at+jwt".into()
            })
        );
        let token = signer.sign(&json!({"kid": "k1"}), &claims());
        assert_eq!(
            check(&validator, &token),
            Err(JwtSvidError::MissingAlgorithm)
        );
    }

    #[test]
    fn repeated_header_names_are_refused() {
        let (signer, validator) = setup();
        let sign_raw = |header: &str| {
            let input = format!("{}.{}", b64(header), b64(claims().to_string()));
            let sig = signer
                .key
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap();
            format!("{input}.{}", b64(sig))
        };
        assert!(check(&validator, &sign_raw(r#"{"alg":"ES256","kid":"k1"}"#)).is_ok());
        assert_eq!(
            check(
                &validator,
                &sign_raw(r#"{"alg":"none","alg":"ES256","kid":"k1"}"#)
            ),
            Err(JwtSvidError::DuplicateMember {
                part: TokenPart::Header,
                name: "alg".into()
            })
        );
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        let (signer, validator) = setup();
        let token = signer.token(&claims());
        assert!(check(&validator, &token).is_ok());
        let big = "a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1);
        assert_eq!(
            check(&validator, &big),
            Err(JwtSvidError::TooLarge {
                len: DEFAULT_MAX_TOKEN_BYTES + 1,
                max: DEFAULT_MAX_TOKEN_BYTES
            })
        );
        let padded = with(claims(), "pad", "x".repeat(DEFAULT_MAX_TOKEN_BYTES).into());
        assert!(matches!(
            check(&validator, &signer.token(&padded)),
            Err(JwtSvidError::TooLarge { .. })
        ));
        let tight = validator.with_max_token_bytes(token.len());
        assert!(check(&tight, &token).is_ok());
        let tighter = tight.with_max_token_bytes(token.len() - 1);
        assert_eq!(
            check(&tighter, &token),
            Err(JwtSvidError::TooLarge {
                len: token.len(),
                max: token.len() - 1
            })
        );
    }

    #[test]
    fn subject_must_be_a_spiffe_id_in_the_trust_domain() {
        let (signer, validator) = setup();
        assert!(check(&validator, &signer.token(&claims())).is_ok());
        let token = signer.token(&with(
            claims(),
            "sub",
            "spiffe://other.org/ns/billing".into(),
        ));
        assert_eq!(
            check(&validator, &token),
            Err(JwtSvidError::WrongTrustDomain {
                expected: td(),
                actual: SpiffeId::parse("spiffe://other.org/ns/billing").unwrap()
            })
        );
        // A look-alike trust domain is another trust domain.
        let token = signer.token(&with(claims(), "sub", "spiffe://example.org.evil/x".into()));
        assert!(matches!(
            check(&validator, &token),
            Err(JwtSvidError::WrongTrustDomain { .. })
        ));
        let token = signer.token(&with(claims(), "sub", "spiffe://example.org/a/../b".into()));
        assert_eq!(
            check(&validator, &token),
            Err(JwtSvidError::BadSubject {
                reason: SpiffeIdError::DotSegment {
                    segment: "..",
                    position: 23
                }
            })
        );
        assert_eq!(
            check(&validator, &signer.token(&without(claims(), "sub"))),
            Err(JwtSvidError::MissingClaim { claim: "sub" })
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let (signer, validator) = setup();
        let token = signer.token(&claims());
        assert!(check(&validator, &token).is_ok());
        let parts: Vec<&str> = token.split('.').collect();

        let two = format!("{}.{}", parts[0], parts[1]);
        assert_eq!(
            check(&validator, &two),
            Err(JwtSvidError::WrongPartCount { count: 2 })
        );
        let four = format!("{token}.x");
        assert_eq!(
            check(&validator, &four),
            Err(JwtSvidError::WrongPartCount { count: 4 })
        );
        assert_eq!(
            check(&validator, ""),
            Err(JwtSvidError::WrongPartCount { count: 1 })
        );

        let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
        assert_eq!(
            check(&validator, &padded),
            Err(JwtSvidError::InvalidBase64 {
                part: TokenPart::Header
            })
        );
        let std_alphabet = format!("{}.{}.{}+", parts[0], parts[1], parts[2]);
        assert_eq!(
            check(&validator, &std_alphabet),
            Err(JwtSvidError::InvalidBase64 {
                part: TokenPart::Signature
            })
        );
        // Right alphabet, impossible length (one leftover character).
        let bad_len = format!("{}.{}.{}", parts[0], parts[1], "A");
        assert_eq!(
            check(&validator, &bad_len),
            Err(JwtSvidError::InvalidBase64 {
                part: TokenPart::Signature
            })
        );
        let not_json = format!("{}.{}.{}", b64("{alg"), parts[1], parts[2]);
        assert_eq!(
            check(&validator, &not_json),
            Err(JwtSvidError::InvalidJson {
                part: TokenPart::Header
            })
        );
        let array = format!("{}.{}.{}", b64("[]"), parts[1], parts[2]);
        assert_eq!(
            check(&validator, &array),
            Err(JwtSvidError::NotAnObject {
                part: TokenPart::Header
            })
        );
        let header = json!({"alg": "ES256", "kid": "k1"});
        let input = format!("{}.{}", b64(header.to_string()), b64("\"just a string\""));
        let sig = signer
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        assert_eq!(
            check(&validator, &format!("{input}.{}", b64(sig))),
            Err(JwtSvidError::NotAnObject {
                part: TokenPart::Claims
            })
        );
    }

    #[test]
    fn es384_rs256_and_ps256_verify() {
        let p384 = EcSigner::new(&ECDSA_P384_SHA384_FIXED_SIGNING, "p384");
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let (_, rsa_public) =
            <x509_parser::public_key::RSAPublicKey as x509_parser::prelude::FromDer<_>>::from_der(
                rsa.public_key().as_ref(),
            )
            .unwrap();
        let rsa_authority = JwtAuthority {
            key_id: "rsa".into(),
            public_key: JwtPublicKey::Rsa {
                n: rsa_public.modulus.to_vec(),
                e: rsa_public.exponent.to_vec(),
            },
        };
        let validator = JwtSvidValidator::new(td(), &[p384.authority(), rsa_authority]).unwrap();

        let token = p384.sign(&json!({"alg": "ES384", "kid": "p384"}), &claims());
        assert_eq!(check(&validator, &token).unwrap().key_id, "p384");
        let token = p384.sign(&json!({"alg": "ES256", "kid": "p384"}), &claims());
        assert!(matches!(
            check(&validator, &token),
            Err(JwtSvidError::AlgorithmKeyMismatch {
                key_type: "EC P-384",
                ..
            })
        ));

        let rsa_token = |alg: &str, padding: &'static dyn aws_lc_rs::signature::RsaEncoding| {
            let input = format!(
                "{}.{}",
                b64(json!({"alg": alg, "kid": "rsa"}).to_string()),
                b64(claims().to_string())
            );
            let mut sig = vec![0; rsa.public_modulus_len()];
            rsa.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig)
                .unwrap();
            format!("{input}.{}", b64(sig))
        };
        assert!(check(&validator, &rsa_token("RS256", &RSA_PKCS1_SHA256)).is_ok());
        assert!(check(&validator, &rsa_token("PS256", &RSA_PSS_SHA256)).is_ok());
        // A PKCS#1 v1.5 signature presented as PSS must not verify.
        assert_eq!(
            check(&validator, &rsa_token("PS256", &RSA_PKCS1_SHA256)),
            Err(JwtSvidError::BadSignature { kid: "rsa".into() })
        );
        assert!(matches!(
            check(&validator, &rsa_token("ES256", &RSA_PKCS1_SHA256)),
            Err(JwtSvidError::AlgorithmKeyMismatch {
                key_type: "RSA",
                ..
            })
        ));
    }

    #[test]
    fn validator_construction_checks_keys() {
        let signer = EcSigner::p256("k1");
        assert!(JwtSvidValidator::new(td(), &[signer.authority()]).is_ok());
        assert_eq!(
            JwtSvidValidator::new(td(), &[]).unwrap_err(),
            JwtSvidError::NoAuthorities { trust_domain: td() }
        );
        assert_eq!(
            JwtSvidValidator::new(td(), &[signer.authority(), signer.authority()]).unwrap_err(),
            JwtSvidError::DuplicateKeyId { kid: "k1".into() }
        );
        let off_curve = JwtAuthority {
            key_id: "bad".into(),
            public_key: JwtPublicKey::EcP256 {
                x: [1; 32],
                y: [2; 32],
            },
        };
        assert!(matches!(
            JwtSvidValidator::new(td(), &[off_curve]),
            Err(JwtSvidError::InvalidKey { .. })
        ));
        let small_rsa = JwtAuthority {
            key_id: "small".into(),
            public_key: JwtPublicKey::Rsa {
                n: vec![0xff; 128],
                e: vec![1, 0, 1],
            },
        };
        assert_eq!(
            JwtSvidValidator::new(td(), &[small_rsa]).unwrap_err(),
            JwtSvidError::InvalidKey {
                kid: "small".into(),
                reason: "the RSA modulus must be 2048 to 8192 bits"
            }
        );
    }

    #[test]
    fn errors_and_debug_never_contain_the_token() {
        let (signer, validator) = setup();
        let token = signer.token(&with(claims(), "exp", (NOW - 3600).into()));
        let err = check(&validator, &token).unwrap_err();
        let signature = token.rsplit('.').next().unwrap();
        for text in [
            err.to_string(),
            format!("{err:?}"),
            format!("{validator:?}"),
        ] {
            assert!(!text.contains(signature), "{text}");
            assert!(!text.contains(token.split('.').nth(1).unwrap()), "{text}");
        }
        assert_eq!(
            err.to_string(),
            "the token expired at 2025-12-31T23:00:00Z (unix 1767222000) \
             (now 2026-01-01T00:00:00Z (unix 1767225600))"
        );
        // Attacker-chosen names are shortened before they are quoted.
        let long = "k".repeat(1000);
        let token = signer.sign(&json!({"alg": "ES256", "kid": long}), &claims());
        let JwtSvidError::UnknownKeyId { kid, .. } = check(&validator, &token).unwrap_err() else {
            panic!()
        };
        assert!(kid.len() < 100);
    }

    #[test]
    fn timestamps_format_as_utc_dates() {
        let cases = [
            (0, "1970-01-01T00:00:00Z (unix 0)"),
            (951_782_400, "2000-02-29T00:00:00Z (unix 951782400)"),
            (1_709_164_799, "2024-02-28T23:59:59Z (unix 1709164799)"),
            (4_102_444_800, "2100-01-01T00:00:00Z (unix 4102444800)"),
            (-1, "1969-12-31T23:59:59Z (unix -1)"),
            (i64::MAX, "unix 9223372036854775807"),
            (i64::MIN, "unix -9223372036854775808"),
        ];
        for (secs, want) in cases {
            assert_eq!(Timestamp(secs).to_string(), want);
        }
    }

    #[test]
    fn insecure_decode_reads_without_verifying() {
        let (signer, _) = setup();
        let token = signer.token(&claims());
        let (header, body) = insecure_decode_unverified(&token).unwrap();
        assert_eq!(header.alg, "ES256");
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(body, claims());
        // It reports, rather than judges, the algorithm...
        let unsigned = format!(
            "{}.{}.",
            b64(json!({"alg": "none"}).to_string()),
            b64(claims().to_string())
        );
        assert_eq!(insecure_decode_unverified(&unsigned).unwrap().0.alg, "none");
        // ...but keeps the structure checks.
        let jku = signer.sign(&json!({"alg": "ES256", "jku": "x"}), &claims());
        assert_eq!(
            insecure_decode_unverified(&jku).unwrap_err(),
            JwtSvidError::UnexpectedHeader { name: "jku".into() }
        );
        assert!(matches!(
            insecure_decode_unverified(&"a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1)),
            Err(JwtSvidError::TooLarge { .. })
        ));
        assert_eq!(
            insecure_decode_unverified("a.b").unwrap_err(),
            JwtSvidError::WrongPartCount { count: 2 }
        );
    }

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
        let json = serde_json::to_string(&aud("billing")).unwrap();
        assert_eq!(json, r#""billing""#);
        assert_eq!(
            serde_json::from_str::<Audience>(&json).unwrap(),
            aud("billing")
        );
        assert!(serde_json::from_str::<Audience>(r#""a b""#).is_err());
    }

    #[test]
    fn rsa_der_encoding_handles_long_lengths_and_sign_bits() {
        assert_eq!(
            der_unsigned_integer(&[0x01, 0x00, 0x01]),
            [0x02, 0x03, 0x01, 0x00, 0x01]
        );
        assert_eq!(
            der_unsigned_integer(&[0x00, 0x80]),
            [0x02, 0x02, 0x00, 0x80]
        );
        assert_eq!(der_unsigned_integer(&[]), [0x02, 0x01, 0x00]);
        let long = der_tagged(0x30, &[0; 300]);
        assert_eq!(&long[..4], &[0x30, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
        assert_eq!(&der_tagged(0x30, &[0; 200])[..3], &[0x30, 0x81, 200]);
        assert_eq!(bit_length(&[0x00, 0x01, 0x00]), 9);
    }
}
