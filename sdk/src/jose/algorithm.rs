//! Which JWS algorithms a use accepts: an allow-list checked before any key
//! is looked at, and the key type each algorithm needs.

use std::fmt;

use super::error::{JoseError, quoted};
use super::key::KeyType;

/// A JWS signature algorithm Mayfly can verify (RFC 7518 §3.1). Symmetric
/// algorithms are deliberately absent: an HMAC keyed with a public key is
/// the classic way to forge a token.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256.
    Ps256,
}

impl JwsAlgorithm {
    /// The algorithm an `alg` header names, if Mayfly can verify it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "ES384" => Some(Self::Es384),
            "RS256" => Some(Self::Rs256),
            "PS256" => Some(Self::Ps256),
            _ => None,
        }
    }

    /// The `alg` value, e.g. `ES256`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
        }
    }

    /// The same algorithm in jsonwebtoken's terms, whose signer and verifier
    /// traits Mayfly's keys implement.
    pub fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::Es384 => jsonwebtoken::Algorithm::ES384,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Ps256 => jsonwebtoken::Algorithm::PS256,
        }
    }

    /// Whether a key of `key_type` can verify this algorithm: an EC key only
    /// on its own curve's algorithm, an RSA key with either padding.
    pub fn fits(self, key_type: KeyType) -> bool {
        matches!(
            (self, key_type),
            (Self::Es256, KeyType::EcP256)
                | (Self::Es384, KeyType::EcP384)
                | (Self::Rs256 | Self::Ps256, KeyType::Rsa { .. })
        )
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The algorithms one use accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmPolicy {
    allowed: &'static [JwsAlgorithm],
}

impl AlgorithmPolicy {
    /// JWT-SVIDs: what SPIFFE issuers sign with (JWT-SVID.md §3 names the
    /// JWS algorithms; Mayfly issues ES256).
    pub const JWT_SVID: Self = Self::new(&[
        JwsAlgorithm::Es256,
        JwsAlgorithm::Es384,
        JwsAlgorithm::Rs256,
        JwsAlgorithm::Ps256,
    ]);

    /// Tokens of outside issuers that attest a workload (Kubernetes
    /// service-account tokens, OIDC ID tokens): what those issuers sign with.
    pub const ISSUER_TOKEN: Self = Self::new(&[
        JwsAlgorithm::Rs256,
        JwsAlgorithm::Es256,
        JwsAlgorithm::Es384,
    ]);

    /// A policy accepting exactly `allowed`.
    pub const fn new(allowed: &'static [JwsAlgorithm]) -> Self {
        Self { allowed }
    }

    /// The accepted algorithms.
    pub const fn allowed(&self) -> &'static [JwsAlgorithm] {
        self.allowed
    }

    /// The algorithms of this policy a key of `key_type` verifies.
    pub fn usable_with(&self, key_type: KeyType) -> Vec<JwsAlgorithm> {
        self.allowed
            .iter()
            .copied()
            .filter(|algorithm| algorithm.fits(key_type))
            .collect()
    }

    /// The algorithm `alg` names, if this policy accepts it.
    ///
    /// # Errors
    ///
    /// [`JoseError::UnsupportedAlgorithm`] for anything else (`none`, `HS256`,
    /// an algorithm another use accepts).
    pub fn check(&self, alg: &str) -> Result<JwsAlgorithm, JoseError> {
        JwsAlgorithm::from_name(alg)
            .filter(|algorithm| self.allowed.contains(algorithm))
            .ok_or_else(|| JoseError::UnsupportedAlgorithm {
                alg: quoted(alg),
                allowed: self.allowed,
            })
    }
}

/// `ES256, ES384` — for messages.
pub fn names(algorithms: &[JwsAlgorithm]) -> String {
    algorithms
        .iter()
        .map(|algorithm| algorithm.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [JwsAlgorithm; 4] = [
        JwsAlgorithm::Es256,
        JwsAlgorithm::Es384,
        JwsAlgorithm::Rs256,
        JwsAlgorithm::Ps256,
    ];

    #[test]
    fn names_round_trip_and_nothing_else_is_an_algorithm() {
        for algorithm in ALL {
            assert_eq!(JwsAlgorithm::from_name(algorithm.name()), Some(algorithm));
            assert_eq!(algorithm.to_string(), algorithm.name());
        }
        for name in ["none", "HS256", "es256", "ES512", "RS384", "EdDSA", ""] {
            assert_eq!(JwsAlgorithm::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn the_allow_list_is_per_use() {
        assert_eq!(
            AlgorithmPolicy::JWT_SVID.check("PS256"),
            Ok(JwsAlgorithm::Ps256)
        );
        assert_eq!(
            AlgorithmPolicy::ISSUER_TOKEN.check("PS256"),
            Err(JoseError::UnsupportedAlgorithm {
                alg: "PS256".into(),
                allowed: AlgorithmPolicy::ISSUER_TOKEN.allowed()
            })
        );
        let err = AlgorithmPolicy::ISSUER_TOKEN.check("none").unwrap_err();
        assert_eq!(
            err.to_string(),
            "algorithm \"none\" is not accepted (allowed: RS256, ES256, ES384)"
        );
    }

    #[test]
    fn an_algorithm_fits_only_its_key_type() {
        let rsa = KeyType::Rsa { modulus_bits: 2048 };
        let fits = |key_type| -> Vec<JwsAlgorithm> {
            ALL.into_iter().filter(|alg| alg.fits(key_type)).collect()
        };
        assert_eq!(fits(KeyType::EcP256), [JwsAlgorithm::Es256]);
        assert_eq!(fits(KeyType::EcP384), [JwsAlgorithm::Es384]);
        assert_eq!(fits(rsa), [JwsAlgorithm::Rs256, JwsAlgorithm::Ps256]);
        assert_eq!(
            AlgorithmPolicy::ISSUER_TOKEN.usable_with(rsa),
            [JwsAlgorithm::Rs256]
        );
        assert_eq!(
            AlgorithmPolicy::JWT_SVID.usable_with(KeyType::EcP384),
            [JwsAlgorithm::Es384]
        );
    }

    #[test]
    fn each_algorithm_has_its_jsonwebtoken_twin() {
        for algorithm in ALL {
            let twin = algorithm.to_jsonwebtoken();
            assert_eq!(
                serde_json::to_value(twin).unwrap(),
                serde_json::Value::from(algorithm.name())
            );
        }
    }
}
