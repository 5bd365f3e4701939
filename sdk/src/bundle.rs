//! The SPIFFE bundle: a trust domain's X.509 and JWT authorities, as the JWK
//! Set document of SPIFFE_Trust_Domain_and_Bundle.md §4.
//!
//! ```json
//! {
//!   "keys": [
//!     {"use": "x509-svid", "kty": "EC", "crv": "P-256", "x": "…", "y": "…", "x5c": ["<base64 DER>"]},
//!     {"use": "jwt-svid", "kid": "k1", "kty": "EC", "crv": "P-256", "x": "…", "y": "…"}
//!   ],
//!   "spiffe_sequence": 7,
//!   "spiffe_refresh_hint": 300
//! }
//! ```
//!
//! [`SpiffeBundle::parse`] is strict where a mistake could hide a problem:
//! an `x509-svid` entry carries exactly one certificate in `x5c`, and its
//! other key parameters, when present, must match that certificate; a
//! `jwt-svid` entry has a unique, non-empty `kid` and a well-formed public key.
//! As the spec requires, entries with an unknown `use` or `kty` are ignored,
//! as are entries without `use` and `jwt-svid` EC keys on curves this crate
//! cannot verify (anything but P-256 and P-384).
//!
//! [`SpiffeBundle::to_jwks_json`] gives the plain RFC 7517 JWK Set of the JWT
//! keys that OIDC relying parties expect from a `jwks_uri`.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use crate::jose::key::strip_leading_zeros;
use crate::jose::{JwkError, KeyError, VerificationKey, jwk};
use crate::spiffe_id::TrustDomain;

/// The largest bundle document [`SpiffeBundle::parse`] reads, in bytes.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

const USE_X509_SVID: &str = "x509-svid";
const USE_JWT_SVID: &str = "jwt-svid";

/// Why a bundle could not be parsed or produced.
///
/// `index` is the position of the entry in the document's `keys` array
/// (parsing) or in [`SpiffeBundle::x509_authorities`] (producing).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The document is larger than the limit; it was not parsed.
    #[error("the bundle document is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit, [`MAX_BUNDLE_BYTES`].
        max: usize,
    },

    /// The document is not well-formed JSON.
    #[error("the bundle document is not valid JSON (line {line}, column {column})")]
    InvalidJson {
        /// Line of the first error, 1-based.
        line: usize,
        /// Column of the first error, 1-based.
        column: usize,
    },

    /// The document is JSON but not an object.
    #[error("the bundle document must be a JSON object")]
    NotAnObject,

    /// The document has no `keys` member, which the spec requires.
    #[error("the bundle document has no \"keys\" member")]
    MissingKeys,

    /// A top-level member has the wrong type.
    #[error("bundle member {field:?} must be {expected}")]
    InvalidField {
        /// The member's name.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },

    /// An entry of `keys` is not a JSON object.
    #[error("keys[{index}] must be a JSON object")]
    KeyNotAnObject {
        /// The entry's position in `keys`.
        index: usize,
    },

    /// An entry lacks a parameter its `use` requires.
    #[error("keys[{index}] has no {field:?} parameter")]
    MissingKeyField {
        /// The entry's position in `keys`.
        index: usize,
        /// The missing parameter.
        field: &'static str,
    },

    /// An entry's parameter has the wrong type or value.
    #[error("keys[{index}] parameter {field:?} must be {expected}")]
    InvalidKeyField {
        /// The entry's position in `keys`.
        index: usize,
        /// The parameter.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },

    /// An `x509-svid` entry does not carry exactly one certificate.
    #[error(
        "keys[{index}] (x509-svid) must carry exactly one certificate in \"x5c\", found {count}"
    )]
    X5cCount {
        /// The entry's position in `keys`.
        index: usize,
        /// How many `x5c` values it has.
        count: usize,
    },

    /// A parameter is not valid base64 (standard for `x5c`, base64url
    /// without padding for the others).
    #[error(
        "keys[{index}] parameter {field:?} is not valid {}",
        base64_flavour(field)
    )]
    InvalidBase64 {
        /// The entry's position in `keys`.
        index: usize,
        /// The parameter.
        field: &'static str,
    },

    /// An `x5c` value is not a DER X.509 certificate.
    #[error("keys[{index}] \"x5c\" is not a DER-encoded X.509 certificate")]
    InvalidCertificate {
        /// The entry's position in `keys`.
        index: usize,
    },

    /// An entry's key parameters do not match its `x5c` certificate.
    #[error("keys[{index}] parameter {field:?} does not match the public key of its certificate")]
    CertificateKeyMismatch {
        /// The entry's position in `keys`.
        index: usize,
        /// The first parameter that differs.
        field: &'static str,
    },

    /// A certificate's public key is not EC P-256, EC P-384 or RSA.
    #[error(
        "certificate {index} has a public key this crate cannot describe as a JWK \
         (supported: EC P-256, EC P-384, RSA)"
    )]
    UnsupportedCertificateKey {
        /// The entry's position in `keys`, or in `x509_authorities`.
        index: usize,
    },

    /// An X.509 authority given to [`SpiffeBundle::to_json`] is not a DER certificate.
    #[error("x509_authorities[{index}] is not a DER-encoded X.509 certificate")]
    InvalidAuthorityCertificate {
        /// Its position in [`SpiffeBundle::x509_authorities`].
        index: usize,
    },

    /// A `jwt-svid` entry has no `kid`, or an empty one.
    #[error("keys[{index}] (jwt-svid) has no \"kid\"; every JWT authority needs a key ID")]
    MissingKeyId {
        /// The entry's position in `keys`.
        index: usize,
    },

    /// Two `jwt-svid` entries share a `kid`.
    #[error("two jwt-svid keys share the key ID {kid:?}")]
    DuplicateKeyId {
        /// The shared key ID.
        kid: String,
    },

    /// An EC coordinate has the wrong length for its curve.
    #[error("keys[{index}] parameter {field:?} is {len} bytes; the curve needs {expected}")]
    CoordinateLength {
        /// The entry's position in `keys`.
        index: usize,
        /// `x` or `y`.
        field: &'static str,
        /// Its decoded length.
        len: usize,
        /// The length the curve requires.
        expected: usize,
    },

    /// A JWT public key is well-formed but unusable (point not on the
    /// curve, RSA modulus out of range …).
    #[error("keys[{index}] is not a usable public key: {reason}")]
    InvalidPublicKey {
        /// The entry's position in `keys`.
        index: usize,
        /// What is wrong with it.
        reason: KeyError,
    },
}

fn base64_flavour(field: &str) -> &'static str {
    if field == "x5c" {
        "base64"
    } else {
        "unpadded base64url"
    }
}

/// A trust domain's authorities: the CA certificates that sign X509-SVIDs
/// and the public keys that sign JWT-SVIDs.
#[derive(Clone, PartialEq, Eq)]
pub struct SpiffeBundle {
    /// The trust domain the authorities speak for. The document itself does
    /// not name it; callers record it alongside (spec §3).
    pub trust_domain: TrustDomain,
    /// `spiffe_sequence`: grows whenever the bundle changes; 0 when absent.
    pub sequence: u64,
    /// `spiffe_refresh_hint`: how often consumers should check for updates.
    pub refresh_hint: Option<Duration>,
    /// DER-encoded X.509 CA certificates (`use: x509-svid`).
    pub x509_authorities: Vec<Vec<u8>>,
    /// JWT signing keys (`use: jwt-svid`).
    pub jwt_authorities: Vec<JwtAuthority>,
}

impl fmt::Debug for SpiffeBundle {
    // Certificates are public, but pages of DER bytes help nobody reading a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeBundle")
            .field("trust_domain", &self.trust_domain)
            .field("sequence", &self.sequence)
            .field("refresh_hint", &self.refresh_hint)
            .field(
                "x509_authorities",
                &format_args!("[{} certificates]", self.x509_authorities.len()),
            )
            .field("jwt_authorities", &self.jwt_authorities)
            .finish()
    }
}

/// A public key that signs JWT-SVIDs, with its key ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtAuthority {
    /// The `kid` tokens name to select this key.
    pub key_id: String,
    /// The public key.
    pub public_key: JwtPublicKey,
}

/// The public half of a JWT signing key.
///
/// Coordinates and RSA integers are unsigned big-endian bytes.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtPublicKey {
    /// An ECDSA P-256 key (ES256).
    EcP256 {
        /// The x coordinate.
        x: [u8; 32],
        /// The y coordinate.
        y: [u8; 32],
    },
    /// An ECDSA P-384 key (ES384).
    EcP384 {
        /// The x coordinate.
        x: [u8; 48],
        /// The y coordinate.
        y: [u8; 48],
    },
    /// An RSA key (RS256 or PS256).
    Rsa {
        /// The modulus.
        n: Vec<u8>,
        /// The public exponent.
        e: Vec<u8>,
    },
}

impl JwtPublicKey {
    /// The JWS algorithm advertised for this key in a JWK Set: `ES256`,
    /// `ES384` or `RS256`. (An RSA key also verifies `PS256`.)
    pub fn jws_algorithm(&self) -> &'static str {
        match self {
            Self::EcP256 { .. } => "ES256",
            Self::EcP384 { .. } => "ES384",
            Self::Rsa { .. } => "RS256",
        }
    }

    /// The key's JWK parameters: `kty` and `crv`/`x`/`y` or `n`/`e`.
    fn jwk_params(&self) -> Vec<(&'static str, Value)> {
        match self {
            Self::EcP256 { x, y } => ec_params("P-256", x, y),
            Self::EcP384 { x, y } => ec_params("P-384", x, y),
            Self::Rsa { n, e } => vec![
                ("kty", "RSA".into()),
                // base64urlUInt is the minimal big-endian form (RFC 7518 §2).
                ("n", URL_SAFE_NO_PAD.encode(strip_leading_zeros(n)).into()),
                ("e", URL_SAFE_NO_PAD.encode(strip_leading_zeros(e)).into()),
            ],
        }
    }

    fn jwk_map(&self) -> Map<String, Value> {
        self.jwk_params()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }
}

fn ec_params(crv: &str, x: &[u8], y: &[u8]) -> Vec<(&'static str, Value)> {
    vec![
        ("kty", "EC".into()),
        ("crv", crv.into()),
        ("x", URL_SAFE_NO_PAD.encode(x).into()),
        ("y", URL_SAFE_NO_PAD.encode(y).into()),
    ]
}

impl JwtAuthority {
    /// This key as an RFC 7517 JWK for OIDC relying parties: `kty`,
    /// `crv`/`x`/`y` or `n`/`e`, `kid`, `"use": "sig"` and `alg`.
    pub fn to_jwk(&self) -> Value {
        let mut map = self.public_key.jwk_map();
        map.insert("kid".into(), self.key_id.clone().into());
        map.insert("use".into(), "sig".into());
        map.insert("alg".into(), self.public_key.jws_algorithm().into());
        Value::Object(map)
    }

    /// This key as a SPIFFE bundle entry (`"use": "jwt-svid"`).
    fn to_bundle_entry(&self) -> Value {
        let mut map = self.public_key.jwk_map();
        map.insert("kid".into(), self.key_id.clone().into());
        map.insert("use".into(), USE_JWT_SVID.into());
        Value::Object(map)
    }
}

impl SpiffeBundle {
    /// An empty bundle for `trust_domain`: sequence 0, no refresh hint, no keys.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            sequence: 0,
            refresh_hint: None,
            x509_authorities: Vec::new(),
            jwt_authorities: Vec::new(),
        }
    }

    /// The bundle as a SPIFFE bundle document (a JWK Set with
    /// `spiffe_sequence` and, when set, `spiffe_refresh_hint`).
    ///
    /// Each X.509 authority's key parameters are read from its certificate.
    ///
    /// # Errors
    ///
    /// [`BundleError::InvalidAuthorityCertificate`] if an X.509 authority is
    /// not a DER certificate, [`BundleError::UnsupportedCertificateKey`] if
    /// its key is not EC P-256, EC P-384 or RSA.
    pub fn to_json(&self) -> Result<String, BundleError> {
        let mut keys = Vec::with_capacity(self.x509_authorities.len() + self.jwt_authorities.len());
        for (index, der) in self.x509_authorities.iter().enumerate() {
            let key = certificate_key(der).map_err(|problem| match problem {
                CertificateProblem::NotACertificate => {
                    BundleError::InvalidAuthorityCertificate { index }
                }
                CertificateProblem::UnsupportedKey => {
                    BundleError::UnsupportedCertificateKey { index }
                }
            })?;
            let mut map = key.jwk_map();
            map.insert("use".into(), USE_X509_SVID.into());
            map.insert("x5c".into(), json!([STANDARD.encode(der)]));
            keys.push(Value::Object(map));
        }
        keys.extend(
            self.jwt_authorities
                .iter()
                .map(JwtAuthority::to_bundle_entry),
        );

        let mut doc = Map::new();
        doc.insert("keys".into(), Value::Array(keys));
        doc.insert("spiffe_sequence".into(), self.sequence.into());
        if let Some(hint) = self.refresh_hint {
            doc.insert("spiffe_refresh_hint".into(), hint.as_secs().into());
        }
        Ok(Value::Object(doc).to_string())
    }

    /// The JWT authorities as a plain RFC 7517 JWK Set for OIDC relying
    /// parties: each key with `kid`, `"use": "sig"` and `alg`, and no SPIFFE
    /// members.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for key types that cannot be
    /// published.
    pub fn to_jwks_json(&self) -> Result<String, BundleError> {
        let keys: Vec<Value> = self
            .jwt_authorities
            .iter()
            .map(JwtAuthority::to_jwk)
            .collect();
        Ok(json!({ "keys": keys }).to_string())
    }

    /// The X.509 authorities as concatenated PEM `CERTIFICATE` blocks.
    pub fn x509_authorities_pem(&self) -> String {
        crate::pem::certificates(self.x509_authorities.iter().map(Vec::as_slice))
    }

    /// Parses a SPIFFE bundle document for `trust_domain`.
    ///
    /// # Errors
    ///
    /// [`BundleError::TooLarge`] before reading anything if `json` passes
    /// [`MAX_BUNDLE_BYTES`]; otherwise the first problem found, naming the
    /// entry (`keys[i]`) and parameter at fault.
    pub fn parse(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, BundleError> {
        if json.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge {
                len: json.len(),
                max: MAX_BUNDLE_BYTES,
            });
        }
        let doc: Value = serde_json::from_slice(json).map_err(|e| BundleError::InvalidJson {
            line: e.line(),
            column: e.column(),
        })?;
        let Value::Object(doc) = doc else {
            return Err(BundleError::NotAnObject);
        };

        let sequence = match doc.get("spiffe_sequence") {
            None => 0,
            Some(v) => v.as_u64().ok_or(BundleError::InvalidField {
                field: "spiffe_sequence",
                expected: "a non-negative integer",
            })?,
        };
        let refresh_hint = match doc.get("spiffe_refresh_hint") {
            None => None,
            Some(v) => Some(Duration::from_secs(v.as_u64().ok_or(
                BundleError::InvalidField {
                    field: "spiffe_refresh_hint",
                    expected: "a non-negative integer number of seconds",
                },
            )?)),
        };
        let keys = match doc.get("keys") {
            None => return Err(BundleError::MissingKeys),
            Some(Value::Array(keys)) => keys,
            Some(_) => {
                return Err(BundleError::InvalidField {
                    field: "keys",
                    expected: "an array",
                });
            }
        };

        let mut bundle = Self {
            trust_domain,
            sequence,
            refresh_hint,
            x509_authorities: Vec::new(),
            jwt_authorities: Vec::new(),
        };
        let mut key_ids = HashSet::new();
        for (index, entry) in keys.iter().enumerate() {
            match parse_entry(index, entry)? {
                Entry::X509(der) => bundle.x509_authorities.push(der),
                Entry::Jwt(authority) => {
                    if !key_ids.insert(authority.key_id.clone()) {
                        return Err(BundleError::DuplicateKeyId {
                            kid: authority.key_id,
                        });
                    }
                    bundle.jwt_authorities.push(authority);
                }
                Entry::Ignored => {}
            }
        }
        Ok(bundle)
    }
}

/// What one entry of `keys` turned out to be.
enum Entry {
    X509(Vec<u8>),
    Jwt(JwtAuthority),
    /// Unknown `use` or `kty`, which the spec says to skip.
    Ignored,
}

/// Reads one entry of `keys`.
fn parse_entry(index: usize, entry: &Value) -> Result<Entry, BundleError> {
    let Value::Object(entry) = entry else {
        return Err(BundleError::KeyNotAnObject { index });
    };
    let fields = EntryFields { index, entry };
    // Spec §4.2.2: an unknown `use` means the entry is for some other SVID
    // type; an absent one cannot be for ours either.
    let Some(key_use) = fields.optional_str("use")? else {
        return Ok(Entry::Ignored);
    };
    if key_use != USE_X509_SVID && key_use != USE_JWT_SVID {
        return Ok(Entry::Ignored);
    }
    // Spec §4.2.1: an unknown `kty` means the whole entry is ignored.
    if !matches!(fields.required_str("kty")?, "EC" | "RSA") {
        return Ok(Entry::Ignored);
    }
    if key_use == USE_X509_SVID {
        parse_x509_entry(&fields).map(Entry::X509)
    } else {
        parse_jwt_entry(&fields)
    }
}

/// Typed access to one entry's parameters, with errors naming the entry.
struct EntryFields<'a> {
    index: usize,
    entry: &'a Map<String, Value>,
}

impl EntryFields<'_> {
    fn optional_str(&self, field: &'static str) -> Result<Option<&str>, BundleError> {
        match self.entry.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(BundleError::InvalidKeyField {
                index: self.index,
                field,
                expected: "a string",
            }),
        }
    }

    fn required_str(&self, field: &'static str) -> Result<&str, BundleError> {
        self.optional_str(field)?
            .ok_or(BundleError::MissingKeyField {
                index: self.index,
                field,
            })
    }
}

/// Reads an `x509-svid` entry: exactly one certificate, and any key
/// parameters alongside it must describe that certificate's key.
fn parse_x509_entry(fields: &EntryFields<'_>) -> Result<Vec<u8>, BundleError> {
    let index = fields.index;
    let x5c = match fields.entry.get("x5c") {
        None => {
            return Err(BundleError::MissingKeyField {
                index,
                field: "x5c",
            });
        }
        Some(Value::Array(values)) => values,
        Some(_) => {
            return Err(BundleError::InvalidKeyField {
                index,
                field: "x5c",
                expected: "an array of base64 strings",
            });
        }
    };
    let [Value::String(cert_b64)] = x5c.as_slice() else {
        if x5c.len() == 1 {
            return Err(BundleError::InvalidKeyField {
                index,
                field: "x5c",
                expected: "an array of base64 strings",
            });
        }
        return Err(BundleError::X5cCount {
            index,
            count: x5c.len(),
        });
    };
    let der = STANDARD
        .decode(cert_b64)
        .map_err(|_| BundleError::InvalidBase64 {
            index,
            field: "x5c",
        })?;
    let key = certificate_key(&der).map_err(|problem| match problem {
        CertificateProblem::NotACertificate => BundleError::InvalidCertificate { index },
        CertificateProblem::UnsupportedKey => BundleError::UnsupportedCertificateKey { index },
    })?;

    // `kty` included: an "RSA" entry around an EC certificate is refused.
    for (field, expected) in key.jwk_params() {
        if let Some(given) = fields.entry.get(field)
            && *given != expected
        {
            return Err(BundleError::CertificateKeyMismatch { index, field });
        }
    }
    Ok(der)
}

/// Reads a `jwt-svid` entry.
fn parse_jwt_entry(fields: &EntryFields<'_>) -> Result<Entry, BundleError> {
    let index = fields.index;
    let key_id = match fields.optional_str("kid")? {
        Some(kid) if !kid.is_empty() => kid.to_owned(),
        _ => return Err(BundleError::MissingKeyId { index }),
    };
    // Canonical form (RSA integers without leading zero octets), so that
    // parse(to_json(bundle)) == bundle even for a publisher that pads:
    // change detection must not see phantom changes.
    let public_key = match jwk::public_key(fields.entry) {
        Ok(Some(public_key)) => public_key,
        // A curve we cannot verify (say P-521) is a key type we do not
        // know; the spec says to skip it rather than fail the bundle.
        Ok(None) => return Ok(Entry::Ignored),
        Err(error) => return Err(jwk_error(index, error)),
    };
    VerificationKey::new(&public_key)
        .map_err(|reason| BundleError::InvalidPublicKey { index, reason })?;
    Ok(Entry::Jwt(JwtAuthority { key_id, public_key }))
}

/// A JWK parameter's problem, placed in the bundle.
fn jwk_error(index: usize, error: JwkError) -> BundleError {
    match error {
        JwkError::MissingMember { member } => BundleError::MissingKeyField {
            index,
            field: member,
        },
        JwkError::NotAString { member } => BundleError::InvalidKeyField {
            index,
            field: member,
            expected: "a string",
        },
        JwkError::InvalidBase64 { member } => BundleError::InvalidBase64 {
            index,
            field: member,
        },
        JwkError::CoordinateLength {
            member,
            len,
            expected,
        } => BundleError::CoordinateLength {
            index,
            field: member,
            len,
            expected,
        },
    }
}

enum CertificateProblem {
    NotACertificate,
    UnsupportedKey,
}

/// The public key of a DER certificate, in JWK terms.
fn certificate_key(der: &[u8]) -> Result<JwtPublicKey, CertificateProblem> {
    use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
    use x509_parser::public_key::PublicKey;

    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| CertificateProblem::NotACertificate)?;
    if !rest.is_empty() {
        return Err(CertificateProblem::NotACertificate);
    }
    let spki = cert.public_key();
    match spki
        .parsed()
        .map_err(|_| CertificateProblem::UnsupportedKey)?
    {
        PublicKey::RSA(rsa) => Ok(JwtPublicKey::Rsa {
            n: strip_leading_zeros(rsa.modulus).to_vec(),
            e: strip_leading_zeros(rsa.exponent).to_vec(),
        }),
        PublicKey::EC(point) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .ok_or(CertificateProblem::UnsupportedKey)?;
            // Only uncompressed points (0x04 || x || y) are described here.
            let coordinates = match point.data() {
                [0x04, rest @ ..] => rest,
                _ => return Err(CertificateProblem::UnsupportedKey),
            };
            if curve == OID_EC_P256 {
                let (x, y) = split_point::<32>(coordinates)?;
                Ok(JwtPublicKey::EcP256 { x, y })
            } else if curve == OID_NIST_EC_P384 {
                let (x, y) = split_point::<48>(coordinates)?;
                Ok(JwtPublicKey::EcP384 { x, y })
            } else {
                Err(CertificateProblem::UnsupportedKey)
            }
        }
        _ => Err(CertificateProblem::UnsupportedKey),
    }
}

fn split_point<const N: usize>(xy: &[u8]) -> Result<([u8; N], [u8; N]), CertificateProblem> {
    if xy.len() != 2 * N {
        return Err(CertificateProblem::UnsupportedKey);
    }
    let (x, y) = xy.split_at(N);
    let x = <[u8; N]>::try_from(x).map_err(|_| CertificateProblem::UnsupportedKey)?;
    let y = <[u8; N]>::try_from(y).map_err(|_| CertificateProblem::UnsupportedKey)?;
    Ok((x, y))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    /// A self-signed CA certificate made with rcgen.
    fn ca_cert(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        ca_cert_with(&key)
    }

    fn ca_cert_with(key: &rcgen::KeyPair) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.org".try_into().unwrap(),
        ));
        params.self_signed(key).unwrap().der().to_vec()
    }

    fn rsa_ca_cert() -> Vec<u8> {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        ca_cert_with(&key)
    }

    /// A real P-256 public key, so coordinates are on the curve.
    fn p256_authority(kid: &str) -> JwtAuthority {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = key.public_key().as_ref();
        JwtAuthority {
            key_id: kid.to_owned(),
            public_key: JwtPublicKey::EcP256 {
                x: point[1..33].try_into().unwrap(),
                y: point[33..65].try_into().unwrap(),
            },
        }
    }

    /// The P-256 generator point: fixed, valid coordinates.
    const G_X: &str = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY";
    const G_Y: &str = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";

    fn parse(json: &str) -> Result<SpiffeBundle, BundleError> {
        SpiffeBundle::parse(td(), json.as_bytes())
    }

    fn sample_bundle() -> SpiffeBundle {
        SpiffeBundle {
            trust_domain: td(),
            sequence: 42,
            refresh_hint: Some(Duration::from_secs(300)),
            x509_authorities: vec![
                ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256),
                ca_cert(&rcgen::PKCS_ECDSA_P384_SHA384),
                rsa_ca_cert(),
            ],
            jwt_authorities: vec![
                p256_authority("k1"),
                JwtAuthority {
                    key_id: "fixed".into(),
                    public_key: JwtPublicKey::EcP256 {
                        x: URL_SAFE_NO_PAD.decode(G_X).unwrap().try_into().unwrap(),
                        y: URL_SAFE_NO_PAD.decode(G_Y).unwrap().try_into().unwrap(),
                    },
                },
            ],
        }
    }

    #[test]
    fn produce_then_parse_round_trips() {
        let bundle = sample_bundle();
        let json = bundle.to_json().unwrap();
        let parsed = SpiffeBundle::parse(td(), json.as_bytes()).unwrap();
        assert_eq!(parsed, bundle);

        let doc: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["spiffe_sequence"], 42);
        assert_eq!(doc["spiffe_refresh_hint"], 300);
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 5);
        assert_eq!(keys[0]["use"], "x509-svid");
        assert_eq!(keys[0]["kty"], "EC");
        assert_eq!(keys[0]["crv"], "P-256");
        assert!(
            keys[0].get("kid").is_none(),
            "x509-svid entries must not have kid"
        );
        assert_eq!(keys[1]["crv"], "P-384");
        assert_eq!(keys[2]["kty"], "RSA");
        assert_eq!(keys[2]["e"], "AQAB");
        assert_eq!(keys[4]["use"], "jwt-svid");
        assert_eq!(keys[4]["kid"], "fixed");
        assert_eq!(keys[4]["x"], G_X);
        assert_eq!(keys[4]["y"], G_Y);

        // The x509-svid key parameters are those of the certificate itself,
        // checked here against x509-parser independently of `certificate_key`.
        let (_, cert) = x509_parser::parse_x509_certificate(&bundle.x509_authorities[0]).unwrap();
        let spki = cert.public_key().subject_public_key.data.to_vec();
        let x = URL_SAFE_NO_PAD
            .decode(keys[0]["x"].as_str().unwrap())
            .unwrap();
        let y = URL_SAFE_NO_PAD
            .decode(keys[0]["y"].as_str().unwrap())
            .unwrap();
        assert_eq!(spki, [&[4u8][..], &x, &y].concat());
    }

    #[test]
    fn optional_members_may_be_absent() {
        let mut bundle = SpiffeBundle::new(td());
        bundle.jwt_authorities.push(p256_authority("k1"));
        let json = bundle.to_json().unwrap();
        assert!(!json.contains("spiffe_refresh_hint"));
        assert_eq!(parse(&json).unwrap(), bundle);

        let parsed = parse(r#"{"keys":[]}"#).unwrap();
        assert_eq!(parsed.sequence, 0);
        assert_eq!(parsed.refresh_hint, None);
        assert!(parsed.x509_authorities.is_empty() && parsed.jwt_authorities.is_empty());
    }

    #[test]
    fn parses_a_hand_written_spec_style_bundle() {
        // Shaped like the spec's Appendix A example, with a real certificate
        // and the unknown entries the spec says to skip.
        let der = rsa_ca_cert();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let x509_parser::public_key::PublicKey::RSA(rsa) = cert.public_key().parsed().unwrap()
        else {
            panic!("not RSA");
        };
        let n = URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.modulus));
        let json = format!(
            r#"{{
                "spiffe_sequence": 1,
                "spiffe_refresh_hint": 2419200,
                "keys": [
                    {{
                        "kty": "RSA",
                        "use": "x509-svid",
                        "x5c": ["{x5c}"],
                        "n": "{n}",
                        "e": "AQAB"
                    }},
                    {{"kty": "EC", "use": "jwt-svid", "kid": "C6vs25welZOx6WksNYfbMfiw9l96pMnD",
                      "crv": "P-256", "x": "{G_X}", "y": "{G_Y}"}},
                    {{"kty": "EC", "use": "sig", "kid": "oidc", "crv": "P-256", "x": "{G_X}", "y": "{G_Y}"}},
                    {{"kty": "EC", "kid": "no-use", "crv": "P-256", "x": "{G_X}", "y": "{G_Y}"}},
                    {{"kty": "OKP", "use": "jwt-svid", "kid": "ed", "crv": "Ed25519", "x": "AAAA"}},
                    {{"kty": "EC", "use": "jwt-svid", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}},
                    {{"kty": "EC", "use": "X509-SVID", "x5c": []}}
                ],
                "some_extension": {{"ignored": true}}
            }}"#,
            x5c = STANDARD.encode(&der),
        );
        let bundle = parse(&json).unwrap();
        assert_eq!(bundle.sequence, 1);
        assert_eq!(bundle.refresh_hint, Some(Duration::from_secs(2_419_200)));
        assert_eq!(bundle.x509_authorities, vec![der]);
        assert_eq!(bundle.jwt_authorities.len(), 1);
        assert_eq!(
            bundle.jwt_authorities[0].key_id,
            "C6vs25welZOx6WksNYfbMfiw9l96pMnD"
        );
    }

    /// A one-entry bundle: `entry` is spliced in as `keys[0]`.
    fn with_entry(entry: &str) -> Result<SpiffeBundle, BundleError> {
        parse(&format!(r#"{{"keys":[{entry}]}}"#))
    }

    fn x509_entry(x5c: &str) -> String {
        format!(r#"{{"use":"x509-svid","kty":"EC","x5c":{x5c}}}"#)
    }

    #[test]
    fn x509_entries_need_exactly_one_certificate() {
        let cert = STANDARD.encode(ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256));
        // Positive control.
        assert_eq!(
            with_entry(&x509_entry(&format!(r#"["{cert}"]"#)))
                .unwrap()
                .x509_authorities
                .len(),
            1
        );
        assert_eq!(
            with_entry(r#"{"use":"x509-svid","kty":"EC"}"#),
            Err(BundleError::MissingKeyField {
                index: 0,
                field: "x5c"
            })
        );
        assert_eq!(
            with_entry(&x509_entry("[]")),
            Err(BundleError::X5cCount { index: 0, count: 0 })
        );
        assert_eq!(
            with_entry(&x509_entry(&format!(r#"["{cert}","{cert}"]"#))),
            Err(BundleError::X5cCount { index: 0, count: 2 })
        );
        assert_eq!(
            with_entry(&x509_entry(&format!(r#""{cert}""#))),
            Err(BundleError::InvalidKeyField {
                index: 0,
                field: "x5c",
                expected: "an array of base64 strings"
            })
        );
        assert_eq!(
            with_entry(&x509_entry(r#"["not base64!"]"#)),
            Err(BundleError::InvalidBase64 {
                index: 0,
                field: "x5c"
            })
        );
        assert_eq!(
            with_entry(&x509_entry(r#"["AAECAw=="]"#)),
            Err(BundleError::InvalidCertificate { index: 0 })
        );
    }

    #[test]
    fn x509_key_parameters_must_match_the_certificate() {
        let cert = STANDARD.encode(ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256));
        let good = parse(
            &SpiffeBundle {
                x509_authorities: vec![STANDARD.decode(&cert).unwrap()],
                ..SpiffeBundle::new(td())
            }
            .to_json()
            .unwrap(),
        );
        assert!(good.is_ok());
        assert_eq!(
            with_entry(&format!(
                r#"{{"use":"x509-svid","kty":"RSA","x5c":["{cert}"]}}"#
            )),
            Err(BundleError::CertificateKeyMismatch {
                index: 0,
                field: "kty"
            })
        );
        assert_eq!(
            with_entry(&format!(
                r#"{{"use":"x509-svid","kty":"EC","crv":"P-256","x":"{G_X}","x5c":["{cert}"]}}"#
            )),
            Err(BundleError::CertificateKeyMismatch {
                index: 0,
                field: "x"
            })
        );
    }

    fn jwt_entry(extra: &str) -> String {
        format!(r#"{{"use":"jwt-svid","kty":"EC","crv":"P-256",{extra}}}"#)
    }

    #[test]
    fn jwt_entries_need_a_unique_key_id() {
        let key = format!(r#""x":"{G_X}","y":"{G_Y}""#);
        let good = with_entry(&jwt_entry(&format!(r#""kid":"k1",{key}"#))).unwrap();
        assert_eq!(good.jwt_authorities[0].key_id, "k1");

        assert_eq!(
            with_entry(&jwt_entry(&key)),
            Err(BundleError::MissingKeyId { index: 0 })
        );
        assert_eq!(
            with_entry(&jwt_entry(&format!(r#""kid":"",{key}"#))),
            Err(BundleError::MissingKeyId { index: 0 })
        );
        let one = jwt_entry(&format!(r#""kid":"k1",{key}"#));
        assert_eq!(
            parse(&format!(r#"{{"keys":[{one},{one}]}}"#)),
            Err(BundleError::DuplicateKeyId { kid: "k1".into() })
        );
    }

    #[test]
    fn jwt_key_material_is_checked() {
        let good = format!(r#""kid":"k","x":"{G_X}","y":"{G_Y}""#);
        assert!(with_entry(&jwt_entry(&good)).is_ok());

        // Padded base64url and standard-alphabet base64 are both refused.
        assert_eq!(
            with_entry(&jwt_entry(&format!(
                r#""kid":"k","x":"{G_X}=","y":"{G_Y}""#
            ))),
            Err(BundleError::InvalidBase64 {
                index: 0,
                field: "x"
            })
        );
        assert_eq!(
            with_entry(&jwt_entry(&format!(
                r#""kid":"k","x":"{G_X}","y":"{}""#,
                G_Y.replace('-', "+")
            ))),
            Err(BundleError::InvalidBase64 {
                index: 0,
                field: "y"
            })
        );
        // A P-384-length coordinate on a P-256 key.
        let long = URL_SAFE_NO_PAD.encode([7u8; 48]);
        assert_eq!(
            with_entry(&jwt_entry(&format!(
                r#""kid":"k","x":"{long}","y":"{G_Y}""#
            ))),
            Err(BundleError::CoordinateLength {
                index: 0,
                field: "x",
                len: 48,
                expected: 32
            })
        );
        assert_eq!(
            with_entry(&jwt_entry(r#""kid":"k","x":"AAAA""#)),
            Err(BundleError::CoordinateLength {
                index: 0,
                field: "x",
                len: 3,
                expected: 32
            })
        );
        // Right length, but (x, x) is not on the curve.
        assert!(matches!(
            with_entry(&jwt_entry(&format!(r#""kid":"k","x":"{G_X}","y":"{G_X}""#))),
            Err(BundleError::InvalidPublicKey { index: 0, .. })
        ));
        assert_eq!(
            with_entry(&jwt_entry(r#""kid":"k","y":"AAAA""#)),
            Err(BundleError::MissingKeyField {
                index: 0,
                field: "x"
            })
        );
    }

    #[test]
    fn document_level_errors() {
        assert!(parse(r#"{"keys":[],"spiffe_sequence":3}"#).is_ok());
        assert_eq!(
            parse("{\"keys\": [}"),
            Err(BundleError::InvalidJson {
                line: 1,
                column: 11
            })
        );
        assert_eq!(parse("[]"), Err(BundleError::NotAnObject));
        assert_eq!(parse("{}"), Err(BundleError::MissingKeys));
        assert_eq!(
            parse(r#"{"keys":{}}"#),
            Err(BundleError::InvalidField {
                field: "keys",
                expected: "an array"
            })
        );
        assert_eq!(
            parse(r#"{"keys":[],"spiffe_sequence":-1}"#),
            Err(BundleError::InvalidField {
                field: "spiffe_sequence",
                expected: "a non-negative integer"
            })
        );
        assert!(matches!(
            parse(r#"{"keys":[],"spiffe_refresh_hint":"300"}"#),
            Err(BundleError::InvalidField {
                field: "spiffe_refresh_hint",
                ..
            })
        ));
        assert_eq!(
            parse(r#"{"keys":[3]}"#),
            Err(BundleError::KeyNotAnObject { index: 0 })
        );

        let at_limit = format!(r#"{{"keys":[]{}}}"#, " ".repeat(MAX_BUNDLE_BYTES - 11));
        assert_eq!(at_limit.len(), MAX_BUNDLE_BYTES);
        assert!(parse(&at_limit).is_ok());
        let over = format!("{at_limit} ");
        assert_eq!(
            parse(&over),
            Err(BundleError::TooLarge {
                len: MAX_BUNDLE_BYTES + 1,
                max: MAX_BUNDLE_BYTES
            })
        );
    }

    #[test]
    fn jwks_for_oidc_has_only_standard_members() {
        let bundle = sample_bundle();
        let doc: Value = serde_json::from_str(&bundle.to_jwks_json().unwrap()).unwrap();
        let Value::Object(doc) = doc else { panic!() };
        assert_eq!(doc.keys().collect::<Vec<_>>(), ["keys"]);
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for key in keys {
            assert_eq!(key["use"], "sig");
            assert_eq!(key["alg"], "ES256");
            assert_eq!(key["kty"], "EC");
            assert_eq!(key["crv"], "P-256");
            assert!(key.get("x5c").is_none());
        }
        assert_eq!(keys[1]["kid"], "fixed");
        assert_eq!(keys[1]["x"], G_X);

        let rsa = JwtAuthority {
            key_id: "r".into(),
            public_key: JwtPublicKey::Rsa {
                n: vec![0, 0xc1, 0x02],
                e: vec![1, 0, 1],
            },
        };
        let jwk = rsa.to_jwk();
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["n"], "wQI", "leading zeros are stripped");
        assert_eq!(jwk["e"], "AQAB");
    }

    #[test]
    fn pem_output_reparses_to_the_same_certificates() {
        let bundle = sample_bundle();
        let pem = bundle.x509_authorities_pem();
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----\n").count(), 3);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let mut rest = pem.as_bytes();
        let mut ders = Vec::new();
        while !rest.is_empty() {
            let (next, block) = x509_parser::pem::parse_x509_pem(rest).unwrap();
            ders.push(block.contents);
            rest = next;
        }
        assert_eq!(ders, bundle.x509_authorities);
    }

    #[test]
    fn producing_rejects_a_non_certificate_authority() {
        let mut bundle = SpiffeBundle::new(td());
        bundle
            .x509_authorities
            .push(ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256));
        assert!(bundle.to_json().is_ok());
        bundle.x509_authorities.push(b"not a certificate".to_vec());
        assert_eq!(
            bundle.to_json(),
            Err(BundleError::InvalidAuthorityCertificate { index: 1 })
        );
        let ed25519 = ca_cert(&rcgen::PKCS_ED25519);
        bundle.x509_authorities = vec![ed25519];
        assert_eq!(
            bundle.to_json(),
            Err(BundleError::UnsupportedCertificateKey { index: 0 })
        );
    }

    #[test]
    fn debug_does_not_dump_certificates() {
        let debug = format!("{:?}", sample_bundle());
        assert!(debug.contains("[3 certificates]"), "{debug}");
        assert!(debug.len() < 2000, "{debug}");
    }

    #[test]
    fn padded_rsa_modulus_parses_to_the_canonical_form() {
        use x509_parser::prelude::FromDer;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).unwrap();
        let x509_parser::public_key::PublicKey::RSA(rsa) = info.parsed().unwrap() else {
            panic!("not RSA");
        };
        let modulus = strip_leading_zeros(rsa.modulus);
        let document = |n: &[u8]| {
            format!(
                r#"{{"keys":[{{"use":"jwt-svid","kid":"r","kty":"RSA","n":"{}","e":"AQAB"}}]}}"#,
                URL_SAFE_NO_PAD.encode(n)
            )
        };
        let td = TrustDomain::new("example.org").unwrap();
        let plain = SpiffeBundle::parse(td.clone(), document(modulus).as_bytes()).unwrap();
        let mut padded_n = vec![0u8];
        padded_n.extend_from_slice(modulus);
        let padded = SpiffeBundle::parse(td.clone(), document(&padded_n).as_bytes()).unwrap();
        assert_eq!(padded, plain, "leading zero octets are not part of the key");
        let again = SpiffeBundle::parse(td, padded.to_json().unwrap().as_bytes()).unwrap();
        assert_eq!(again, padded, "round trip is stable");
    }
}
