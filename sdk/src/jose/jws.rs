//! Reading and verifying one compact JWS under a use's policy: the order of
//! the [module docs](super), in code.

use serde_json::{Map, Value};

use super::algorithm::{AlgorithmPolicy, JwsAlgorithm};
use super::base64url;
use super::compact::{self, CompactParts};
use super::error::{JoseError, TokenPart, quoted};
use super::header::{self, HeaderPolicy, JoseHeader};
use super::json::{self, JsonError};
use super::key::VerificationKey;

/// Everything one use asks of a token before its claims: a size limit, a
/// header policy and an algorithm allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwsPolicy {
    /// Tokens longer than this are refused before anything is decoded.
    pub max_token_bytes: usize,
    /// Which header parameters and `typ` values are accepted.
    pub header: HeaderPolicy,
    /// Which algorithms are accepted.
    pub algorithms: AlgorithmPolicy,
}

impl JwsPolicy {
    /// JWT-SVIDs, with an 8 KiB limit (see [`crate::jwt`]).
    pub const JWT_SVID: Self = Self {
        max_token_bytes: 8 * 1024,
        header: HeaderPolicy::JWT_SVID,
        algorithms: AlgorithmPolicy::JWT_SVID,
    };

    /// Reads `token` up to the choice of its key: size, shape, header,
    /// `alg` on the allow-list (before any other header member), the rest
    /// of the header, and a `kid`. Nothing about any key is looked at.
    ///
    /// # Errors
    ///
    /// The first failed check, as a [`JoseError`].
    pub fn parse<'a>(&self, token: &'a str) -> Result<ParsedJws<'a>, JoseError> {
        let parts = compact::split(token, self.max_token_bytes)?;
        let members = decode_object(parts.header, TokenPart::Header)?;
        let alg = header::algorithm_name(&members)?;
        let algorithm = self.algorithms.check(alg)?;
        let header = self.header.check(&members, alg)?;
        let key_id = header.kid.ok_or(JoseError::MissingKeyId)?;
        Ok(ParsedJws {
            parts,
            algorithm,
            key_id,
        })
    }

    /// Reads `token`'s header and claims WITHOUT verifying its signature or
    /// judging its algorithm: for display and audit, never for a decision.
    /// Every other check of [`parse`](Self::parse) still applies, and the
    /// claims must be a strict JSON object.
    ///
    /// # Errors
    ///
    /// The first failed check, as a [`JoseError`].
    pub fn insecure_decode(
        &self,
        token: &str,
    ) -> Result<(JoseHeader, Map<String, Value>), JoseError> {
        let parts = compact::split(token, self.max_token_bytes)?;
        let members = decode_object(parts.header, TokenPart::Header)?;
        let header = self
            .header
            .check(&members, header::algorithm_name(&members)?)?;
        let claims = decode_object(parts.claims, TokenPart::Claims)?;
        Ok((header, claims))
    }
}

/// A token whose shape, header and algorithm passed a [`JwsPolicy`], waiting
/// for the key its `kid` names. Borrows the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedJws<'a> {
    parts: CompactParts<'a>,
    algorithm: JwsAlgorithm,
    key_id: String,
}

impl<'a> ParsedJws<'a> {
    /// The token's algorithm, on the policy's allow-list.
    pub fn algorithm(&self) -> JwsAlgorithm {
        self.algorithm
    }

    /// The token's `kid`: which of the caller's keys to verify it with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The token's `kid`, owned.
    pub fn into_key_id(self) -> String {
        self.key_id
    }

    /// `header.claims`, the bytes the signature covers.
    pub fn signing_input(&self) -> &'a str {
        self.parts.signing_input
    }

    /// The claims, decoded WITHOUT verifying the signature: only to choose
    /// which issuer's rules and keys to verify with, never to decide.
    ///
    /// # Errors
    ///
    /// [`JoseError::InvalidBase64`], [`JoseError::InvalidJson`],
    /// [`JoseError::NotAnObject`] or [`JoseError::DuplicateMember`] for the
    /// claims.
    pub fn insecure_claims(&self) -> Result<Map<String, Value>, JoseError> {
        decode_object(self.parts.claims, TokenPart::Claims)
    }

    /// Verifies the signature with `key`, then decodes the claims.
    ///
    /// # Errors
    ///
    /// [`JoseError::AlgorithmKeyMismatch`] when the token's algorithm does
    /// not fit `key`'s type, before the signature is looked at;
    /// [`JoseError::InvalidBase64`] for the signature;
    /// [`JoseError::BadSignature`]; then the errors of
    /// [`insecure_claims`](Self::insecure_claims).
    pub fn verify(&self, key: &VerificationKey) -> Result<Map<String, Value>, JoseError> {
        let verifier =
            key.verifier(self.algorithm)
                .ok_or_else(|| JoseError::AlgorithmKeyMismatch {
                    alg: self.algorithm,
                    kid: quoted(&self.key_id),
                    key_type: key.key_type(),
                })?;
        let signature = base64url::decode(self.parts.signature, TokenPart::Signature)?;
        verifier
            .verify(self.parts.signing_input.as_bytes(), &signature)
            .map_err(|_| JoseError::BadSignature {
                kid: quoted(&self.key_id),
            })?;
        // Claims are only parsed once the signature says who wrote them.
        self.insecure_claims()
    }
}

/// Decodes one part as a strict JSON object.
fn decode_object(text: &str, part: TokenPart) -> Result<Map<String, Value>, JoseError> {
    let bytes = base64url::decode(text, part)?;
    json::parse_object(&bytes).map_err(|error| match error {
        JsonError::NotAnObject => JoseError::NotAnObject { part },
        JsonError::DuplicateMember { name } => JoseError::DuplicateMember { part, name },
        JsonError::Invalid { .. } => JoseError::InvalidJson { part },
    })
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::bundle::JwtPublicKey;
    use crate::jose::key::KeyType;

    const ISSUER: JwsPolicy = JwsPolicy {
        max_token_bytes: 16 * 1024,
        header: HeaderPolicy::ISSUER_TOKEN,
        algorithms: AlgorithmPolicy::ISSUER_TOKEN,
    };

    struct Signer(EcdsaKeyPair);

    impl Signer {
        fn new() -> Self {
            Self(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
        }

        fn key(&self) -> VerificationKey {
            let point = self.0.public_key().as_ref();
            VerificationKey::new(&JwtPublicKey::EcP256 {
                x: point[1..33].try_into().unwrap(),
                y: point[33..].try_into().unwrap(),
            })
            .unwrap()
        }

        /// `header` and `claims` exactly as given, signed.
        fn sign(&self, header: &str, claims: &str) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let signature = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }
    }

    const HEADER: &str = r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#;
    const CLAIMS: &str = r#"{"sub":"spiffe://example.org/w","n":{"a":1}}"#;

    #[test]
    fn a_good_token_parses_and_verifies_under_both_policies() {
        let signer = Signer::new();
        let token = signer.sign(HEADER, CLAIMS);
        for policy in [JwsPolicy::JWT_SVID, ISSUER] {
            let jws = policy.parse(&token).unwrap();
            assert_eq!(jws.algorithm(), JwsAlgorithm::Es256);
            assert_eq!(jws.key_id(), "k1");
            assert_eq!(jws.signing_input(), token.rsplit_once('.').unwrap().0);
            let claims = jws.verify(&signer.key()).unwrap();
            assert_eq!(
                Value::Object(claims),
                serde_json::from_str::<Value>(CLAIMS).unwrap()
            );
        }
    }

    #[test]
    fn alg_is_judged_before_the_rest_of_the_header() {
        let signer = Signer::new();
        // Control: the allowed algorithm reaches the parameter checks.
        assert_eq!(
            JwsPolicy::JWT_SVID.parse(&signer.sign(r#"{"alg":"ES256","jku":"x"}"#, "{}")),
            Err(JoseError::UnexpectedHeader {
                name: "jku".into(),
                allowed: &["alg", "kid", "typ"]
            })
        );
        assert_eq!(
            ISSUER.parse(&signer.sign(r#"{"alg":"ES256","kid":"k","crit":["x"]}"#, "{}")),
            Err(JoseError::CriticalHeader)
        );
        // `none` with a header that is wrong in every other way too.
        for policy in [JwsPolicy::JWT_SVID, ISSUER] {
            let header = r#"{"alg":"none","jku":"x","crit":["x"],"kid":7,"typ":[]}"#;
            assert!(matches!(
                policy.parse(&signer.sign(header, "{}")),
                Err(JoseError::UnsupportedAlgorithm { .. })
            ));
            assert_eq!(
                policy.parse(&signer.sign(r#"{"alg":"ES256"}"#, "{}")),
                Err(JoseError::MissingKeyId)
            );
        }
        // PS256 is a JWT-SVID algorithm, not an issuer-token one.
        let ps256 = signer.sign(r#"{"alg":"PS256","kid":"k"}"#, "{}");
        assert!(JwsPolicy::JWT_SVID.parse(&ps256).is_ok());
        assert!(matches!(
            ISSUER.parse(&ps256),
            Err(JoseError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn verification_checks_the_key_type_then_the_signature_then_the_claims() {
        let signer = Signer::new();
        let token = signer.sign(HEADER, CLAIMS);
        assert!(ISSUER.parse(&token).unwrap().verify(&signer.key()).is_ok());
        // Another key claiming the same kid.
        assert_eq!(
            ISSUER.parse(&token).unwrap().verify(&Signer::new().key()),
            Err(JoseError::BadSignature { kid: "k1".into() })
        );
        // An ES384 token for a P-256 key: refused before the signature.
        let es384 = signer.sign(r#"{"alg":"ES384","kid":"k1"}"#, CLAIMS);
        assert_eq!(
            ISSUER.parse(&es384).unwrap().verify(&signer.key()),
            Err(JoseError::AlgorithmKeyMismatch {
                alg: JwsAlgorithm::Es384,
                kid: "k1".into(),
                key_type: KeyType::EcP256
            })
        );
        // A signed duplicate deep in the claims is found after the signature.
        let duplicate = signer.sign(HEADER, r#"{"n":{"a":1,"a":2}}"#);
        let jws = ISSUER.parse(&duplicate).unwrap();
        assert_eq!(
            jws.verify(&signer.key()),
            Err(JoseError::DuplicateMember {
                part: TokenPart::Claims,
                name: "a".into()
            })
        );
        assert_eq!(jws.insecure_claims(), jws.verify(&signer.key()));
    }

    #[test]
    fn insecure_decode_keeps_the_structure_checks_but_not_the_algorithm() {
        let signer = Signer::new();
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(CLAIMS)
        );
        let (header, claims) = JwsPolicy::JWT_SVID.insecure_decode(&unsigned).unwrap();
        assert_eq!((header.alg.as_str(), header.kid), ("none", None));
        assert_eq!(claims["sub"], "spiffe://example.org/w");
        assert!(JwsPolicy::JWT_SVID.parse(&unsigned).is_err());
        assert_eq!(
            JwsPolicy::JWT_SVID.insecure_decode(&signer.sign(r#"{"alg":"none","x5u":"u"}"#, "{}")),
            Err(JoseError::UnexpectedHeader {
                name: "x5u".into(),
                allowed: &["alg", "kid", "typ"]
            })
        );
        assert_eq!(
            JwsPolicy::JWT_SVID.insecure_decode(&signer.sign(HEADER, "[]")),
            Err(JoseError::NotAnObject {
                part: TokenPart::Claims
            })
        );
    }
}
