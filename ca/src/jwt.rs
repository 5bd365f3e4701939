//! JWT-SVID signing: ES256, one audience, nothing else in the header.
//!
//! Claims are `sub`, `aud`, `exp`, `iat` and `jti`, plus `iss` when the caller names an
//! issuer ([`JwtSigner::sign_with_issuer`]): JWT-SVID.md allows registered claims beyond its
//! own, and relying parties that find the keys by OIDC discovery check `iss` against the
//! discovery document's `issuer` (SPIRE's `jwt_issuer` does the same).
//!
//! The JOSE header is jsonwebtoken's [`Header`], and the signature comes from a
//! `jsonwebtoken::crypto::JwtSigner`: the trait jsonwebtoken's crypto providers implement,
//! here over an aws-lc-rs key parsed once, when the CA loads the key. jsonwebtoken's own
//! `encode` asks its provider for a new signer on every call, and its aws-lc-rs ES256 signer
//! parses the PKCS#8 key (and checks the pair) each time; the signers its provider returns
//! are not `Send + Sync`, so one cannot be kept across the broker's threads either. The
//! compact serialization around the signature (`header.claims.signature`, base64url) is the
//! few lines `encode` would run.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::JwtSigner as _;
use jsonwebtoken::signature::{self, Signer};
use jsonwebtoken::{Algorithm, Header};
use mayfly_sdk::SpiffeId;
use mayfly_sdk::bundle::{JwtAuthority, JwtPublicKey};
use mayfly_sdk::jwt::Audience;
use serde::Serialize;

use crate::error::CaError;
use crate::keys::SigningKey;

/// Signs JWT-SVIDs with one P-256 key.
///
/// The key is parsed once, at construction, as are the key ID and the encoded header, so
/// signing costs one ECDSA signature and some base64.
pub struct JwtSigner {
    key: Es256Key,
    key_id: String,
    x: [u8; 32],
    y: [u8; 32],
    /// `base64url({"typ":"JWT","alg":"ES256","kid":...})`, fixed for the life of the key.
    encoded_header: String,
}

/// jsonwebtoken's signing seam over a P-256 key parsed once.
struct Es256Key {
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Signer<Vec<u8>> for Es256Key {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let signature = self
            .key_pair
            .sign(&self.rng, message)
            .map_err(|_| signature::Error::new())?;
        Ok(signature.as_ref().to_vec())
    }
}

impl jsonwebtoken::crypto::JwtSigner for Es256Key {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// A freshly signed JWT-SVID.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedJwt {
    /// The compact serialization, `header.claims.signature`. A bearer credential: never log it.
    pub token: String,
    /// The token's `jti` claim (base64url of 16 random bytes), for audit and revocation.
    pub jti: String,
}

impl fmt::Debug for SignedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedJwt")
            .field("token", &"[redacted]")
            .field("jti", &self.jti)
            .finish()
    }
}

/// Field order is the serialization order; exactly these claims and no others.
#[derive(Serialize)]
struct Claims<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    jti: &'a str,
}

/// The claims [`JwtSigner::sign_with_claims`] sets itself.
const REGISTERED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"];

/// [`Claims`] and extra string claims.
#[derive(Serialize)]
struct WithExtra<'a> {
    #[serde(flatten)]
    base: Claims<'a>,
    #[serde(flatten)]
    extra: std::collections::BTreeMap<&'a str, &'a str>,
}

impl JwtSigner {
    /// Builds a signer from a P-256 key.
    ///
    /// # Errors
    /// [`CaError::InvalidKey`] if the key cannot be used for ES256 (it always can when it is a
    /// [`SigningKey`]); [`CaError::Internal`] if the header cannot be encoded.
    pub fn new(key: &SigningKey) -> Result<Self, CaError> {
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8_der())
            .map_err(|rejected| CaError::InvalidKey {
                context: "JWT signing key".to_string(),
                reason: rejected.to_string(),
            })?;
        let (x, y) = split_point(key_pair.public_key().as_ref())?;
        let key = Es256Key {
            key_pair,
            rng: SystemRandom::new(),
        };
        let key_id = thumbprint(&x, &y);
        // `Header::new` sets `typ: JWT`; nothing else but the kid is added.
        let mut header = Header::new(key.algorithm());
        header.kid = Some(key_id.clone());
        let header = serde_json::to_vec(&header)
            .map_err(|e| CaError::internal("encoding the JWT header", e))?;
        Ok(Self {
            key,
            encoded_header: URL_SAFE_NO_PAD.encode(header),
            key_id,
            x,
            y,
        })
    }

    /// The key ID: the RFC 7638 JWK thumbprint (base64url SHA-256) of the public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public half, as published in the SPIFFE bundle.
    pub fn authority(&self) -> JwtAuthority {
        JwtAuthority {
            key_id: self.key_id.clone(),
            public_key: JwtPublicKey::EcP256 {
                x: self.x,
                y: self.y,
            },
        }
    }

    /// Signs a JWT-SVID with claims exactly `sub`, `aud` (one string), `exp`, `iat` and a
    /// random `jti`.
    ///
    /// The caller decides the lifetime; this only checks `expires_at > issued_at`.
    ///
    /// # Errors
    /// [`CaError::InvalidTokenLifetime`] if `expires_at <= issued_at`; [`CaError::Crypto`] if
    /// random generation or signing fails.
    pub fn sign(
        &self,
        subject: &SpiffeId,
        audience: &Audience,
        issued_at: i64,
        expires_at: i64,
    ) -> Result<SignedJwt, CaError> {
        self.sign_with_issuer(None, subject, audience, issued_at, expires_at)
    }

    /// Like [`sign`](Self::sign), and with `iss` set to `issuer` when it is given: the
    /// `issuer` of the OIDC discovery document that publishes this key. The issuer is the
    /// broker's configuration, not secret and not checked here.
    ///
    /// # Errors
    /// As [`sign`](Self::sign).
    pub fn sign_with_issuer(
        &self,
        issuer: Option<&str>,
        subject: &SpiffeId,
        audience: &Audience,
        issued_at: i64,
        expires_at: i64,
    ) -> Result<SignedJwt, CaError> {
        self.sign_with_claims(issuer, subject, audience, issued_at, expires_at, &[])
    }

    /// Like [`sign_with_issuer`](Self::sign_with_issuer), with `extra` string claims
    /// added (the JWT-SVID format allows claims beyond the required ones). An extra
    /// claim may not replace a registered one (`iss`, `sub`, `aud`, `exp`, `iat`,
    /// `nbf`, `jti`) or appear twice.
    ///
    /// # Errors
    /// As [`sign`](Self::sign); [`CaError::Internal`] for an extra claim name that is
    /// registered or repeated (a caller's bug).
    pub fn sign_with_claims(
        &self,
        issuer: Option<&str>,
        subject: &SpiffeId,
        audience: &Audience,
        issued_at: i64,
        expires_at: i64,
        extra: &[(&str, &str)],
    ) -> Result<SignedJwt, CaError> {
        if expires_at <= issued_at {
            return Err(CaError::InvalidTokenLifetime {
                issued_at,
                expires_at,
            });
        }
        let jti = random_jti()?;
        let base = Claims {
            iss: issuer,
            sub: subject.as_str(),
            aud: audience.as_str(),
            exp: expires_at,
            iat: issued_at,
            jti: &jti,
        };
        let claims = if extra.is_empty() {
            serde_json::to_vec(&base)
        } else {
            let mut map = std::collections::BTreeMap::new();
            for (name, value) in extra {
                if REGISTERED_CLAIMS.contains(name) || map.insert(*name, *value).is_some() {
                    return Err(CaError::internal(
                        "adding JWT claims",
                        format!("claim {name:?} is registered or given twice"),
                    ));
                }
            }
            serde_json::to_vec(&WithExtra { base, extra: map })
        }
        .map_err(|e| CaError::internal("encoding JWT claims", e))?;
        // header "." claims "." signature; a 64-byte signature takes 86 characters.
        let capacity = self.encoded_header.len() + claims.len().div_ceil(3) * 4 + 88;
        let mut token = String::with_capacity(capacity);
        token.push_str(&self.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let signature = self
            .key
            .try_sign(token.as_bytes())
            .map_err(|_| CaError::Crypto {
                operation: "signing a JWT",
            })?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(SignedJwt { token, jti })
    }
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner")
            .field("algorithm", &"ES256")
            .field("key_id", &self.key_id)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// Random bytes for `jti`s, drawn from the system generator [`JTI_POOL`] bytes at a time
/// per thread. One draw per token was 1.8 % of the broker's CPU on the batch path (each
/// call reseeds with prediction resistance); a `jti` is public in its token, so holding
/// the next ones in memory gives nothing away.
const JTI_POOL: usize = 4096;

/// A thread's unused random bytes for `jti`s.
struct JtiPool {
    bytes: [u8; JTI_POOL],
    next: usize,
}

thread_local! {
    static JTI_BYTES: std::cell::RefCell<JtiPool> = const {
        std::cell::RefCell::new(JtiPool { bytes: [0; JTI_POOL], next: JTI_POOL })
    };
}

fn random_jti() -> Result<String, CaError> {
    let bytes = JTI_BYTES.with_borrow_mut(|pool| {
        const LEN: usize = 16;
        if pool.next + LEN > JTI_POOL {
            aws_lc_rs::rand::fill(&mut pool.bytes).map_err(|_| CaError::Crypto {
                operation: "generating a jti",
            })?;
            pool.next = 0;
        }
        let mut bytes = [0u8; LEN];
        bytes.copy_from_slice(&pool.bytes[pool.next..pool.next + LEN]);
        pool.next += LEN;
        Ok::<_, CaError>(bytes)
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Splits an uncompressed P-256 point `04 || x || y` into its coordinates.
fn split_point(point: &[u8]) -> Result<([u8; 32], [u8; 32]), CaError> {
    let bad = || {
        CaError::internal(
            "reading the JWT public key",
            "not an uncompressed P-256 point",
        )
    };
    let coordinates = point.strip_prefix(&[0x04]).ok_or_else(bad)?;
    if coordinates.len() != 64 {
        return Err(bad());
    }
    let (x, y) = coordinates.split_at(32);
    Ok((
        x.try_into().map_err(|_| bad())?,
        y.try_into().map_err(|_| bad())?,
    ))
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
fn thumbprint(x: &[u8; 32], y: &[u8; 32]) -> String {
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(x),
        URL_SAFE_NO_PAD.encode(y)
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn claims_of(token: &str) -> serde_json::Value {
        let claims = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
    }

    #[test]
    fn jtis_are_distinct_16_random_bytes_across_pool_refills() {
        // Five pools' worth, from this thread and another (each has its own pool).
        let count = 5 * JTI_POOL / 16;
        let here: Vec<String> = (0..count).map(|_| random_jti().unwrap()).collect();
        let there = std::thread::spawn(move || {
            (0..count)
                .map(|_| random_jti().unwrap())
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        let mut seen = std::collections::HashSet::new();
        for jti in here.iter().chain(&there) {
            let bytes = URL_SAFE_NO_PAD.decode(jti).unwrap();
            assert_eq!(bytes.len(), 16, "{jti}");
            // A pool never filled would hand out its initial zeros.
            assert_ne!(bytes, [0u8; 16], "{jti}");
            assert!(seen.insert(jti.clone()), "{jti} twice");
        }
        // Control: the set does catch a repeat.
        assert!(!seen.insert(here[0].clone()));
    }

    #[test]
    fn iss_is_present_exactly_when_an_issuer_is_given() {
        let signer = JwtSigner::new(&SigningKey::generate().unwrap()).unwrap();
        let subject = SpiffeId::parse("spiffe://example.org/billing").unwrap();
        let audience = Audience::new("payments").unwrap();
        let issuer = "https://mayfly.example.org";

        let with_issuer = signer
            .sign_with_issuer(Some(issuer), &subject, &audience, 100, 200)
            .unwrap();
        let claims = claims_of(&with_issuer.token);
        assert_eq!(claims["iss"], issuer);
        let mut names: Vec<&String> = claims.as_object().unwrap().keys().collect();
        names.sort();
        assert_eq!(names, ["aud", "exp", "iat", "iss", "jti", "sub"]);

        // Without one, the claims are exactly what they were.
        for signed in [
            signer.sign(&subject, &audience, 100, 200).unwrap(),
            signer
                .sign_with_issuer(None, &subject, &audience, 100, 200)
                .unwrap(),
        ] {
            let claims = claims_of(&signed.token);
            assert!(claims.get("iss").is_none(), "{claims}");
            assert_eq!(claims.as_object().unwrap().len(), 5);
        }
        // The lifetime check holds with an issuer too.
        assert!(matches!(
            signer.sign_with_issuer(Some(issuer), &subject, &audience, 200, 200),
            Err(CaError::InvalidTokenLifetime { .. })
        ));
    }

    #[test]
    fn extra_claims_are_added_but_never_replace_registered_ones() {
        let signer = JwtSigner::new(&SigningKey::generate().unwrap()).unwrap();
        let subject = SpiffeId::parse("spiffe://example.org/billing").unwrap();
        let audience = Audience::new("payments").unwrap();
        let signed = signer
            .sign_with_claims(
                None,
                &subject,
                &audience,
                100,
                200,
                &[("mayfly_env", "prod"), ("mayfly_data_class", "phi")],
            )
            .unwrap();
        let claims = claims_of(&signed.token);
        assert_eq!(claims["mayfly_env"], "prod");
        assert_eq!(claims["mayfly_data_class"], "phi");
        assert_eq!(claims["sub"], subject.as_str());
        assert_eq!(claims.as_object().unwrap().len(), 7);
        for bad in [
            &[("sub", "spiffe://example.org/other")][..],
            &[("a", "1"), ("a", "2")],
        ] {
            assert!(
                matches!(
                    signer.sign_with_claims(None, &subject, &audience, 100, 200, bad),
                    Err(CaError::Internal { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn split_point_rejects_compressed_points() {
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        assert!(split_point(&point).is_ok());
        point[0] = 0x02;
        assert!(split_point(&point).is_err());
        assert!(split_point(&point[..33]).is_err());
    }
}
