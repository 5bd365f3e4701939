//! JWT-SVIDs and JWT bundles as the Workload API delivers them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::Value;
use zeroize::Zeroizing;

use super::WorkloadError;
use crate::bundle::{BundleError, JwtAuthority, MAX_BUNDLE_BYTES, SpiffeBundle};
use crate::jwt::insecure_decode_unverified;
use crate::{SpiffeId, TrustDomain};

/// A JWT-SVID from the agent, with what its claims say.
///
/// The claims were read, not verified: the token came from the local agent
/// over its socket, which is trusted for this. A relying party verifies
/// with a [`JwtVerifier`](super::JwtVerifier). `Debug` never shows the
/// token, and its bytes are wiped when dropped.
#[derive(Clone)]
pub struct JwtSvid {
    spiffe_id: SpiffeId,
    token: Zeroizing<String>,
    audience: Vec<String>,
    expires_at: i64,
    issued_at: Option<i64>,
    jti: Option<String>,
    hint: Option<String>,
}

impl fmt::Debug for JwtSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvid")
            .field("spiffe_id", &self.spiffe_id)
            .field("token", &"[redacted]")
            .field("audience", &self.audience)
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .field("jti", &self.jti)
            .field("hint", &self.hint)
            .finish()
    }
}

impl JwtSvid {
    /// The subject.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The compact JWS, to send as a bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The audiences it is for (one, from a Mayfly agent).
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// `exp`, Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// `iat`, Unix seconds, if the token has one.
    pub fn issued_at(&self) -> Option<i64> {
        self.issued_at
    }

    /// `jti`, if the token has one: what a revocation of this one token
    /// names.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    /// The operator's hint for choosing among several SVIDs, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Reads the claims a source needs, and checks the token is for the
    /// SPIFFE ID the agent said.
    pub(crate) fn parse(
        token: Zeroizing<String>,
        spiffe_id: &str,
        hint: String,
    ) -> Result<Self, WorkloadError> {
        let invalid =
            |reason: String| WorkloadError::invalid_response(format!("JWT-SVID: {reason}"));
        let spiffe_id: SpiffeId = spiffe_id
            .parse()
            .map_err(|e| invalid(format!("SPIFFE ID {spiffe_id:?}: {e}")))?;
        let (_, claims) = insecure_decode_unverified(&token).map_err(|e| invalid(e.to_string()))?;
        let subject = claims.get("sub").and_then(Value::as_str);
        if subject != Some(spiffe_id.as_str()) {
            return Err(invalid(format!(
                "the token's subject {subject:?} is not {spiffe_id}"
            )));
        }
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid("no integer \"exp\"".to_owned()))?;
        let audience = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(many)) => many
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        Ok(JwtSvid {
            spiffe_id,
            token,
            audience,
            expires_at,
            issued_at: claims.get("iat").and_then(Value::as_i64),
            jti: claims.get("jti").and_then(Value::as_str).map(str::to_owned),
            hint: (!hint.is_empty()).then_some(hint),
        })
    }
}

/// The JWT authorities of every trust domain the agent serves, by trust
/// domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtBundles {
    bundles: BTreeMap<TrustDomain, Vec<JwtAuthority>>,
}

impl JwtBundles {
    /// The JWT authorities of `trust_domain`.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&[JwtAuthority]> {
        self.bundles.get(trust_domain).map(Vec::as_slice)
    }

    /// Every trust domain with its JWT authorities.
    pub fn iter(&self) -> impl Iterator<Item = (&TrustDomain, &[JwtAuthority])> {
        self.bundles.iter().map(|(td, keys)| (td, keys.as_slice()))
    }

    /// Parses the `FetchJWTBundles` map: trust domain SPIFFE ID → JWK Set.
    pub(crate) fn parse(bundles: HashMap<String, Vec<u8>>) -> Result<Self, WorkloadError> {
        let mut parsed = BTreeMap::new();
        for (key, jwks) in bundles {
            let trust_domain = TrustDomain::new(&key).map_err(|e| {
                WorkloadError::invalid_response(format!("JWT bundle key {key:?}: {e}"))
            })?;
            let bundle = jwt_bundle_from_jwks(trust_domain.clone(), &jwks).map_err(|e| {
                WorkloadError::invalid_response(format!("JWT bundle of {trust_domain}: {e}"))
            })?;
            parsed.insert(trust_domain, bundle.jwt_authorities);
        }
        Ok(JwtBundles { bundles: parsed })
    }
}

/// Parses a plain RFC 7517 JWK Set, as `FetchJWTBundles` and OIDC
/// `jwks_uri` endpoints serve it, into a bundle of `trust_domain` holding
/// only JWT authorities.
///
/// Keys whose `use` is `sig`, `jwt-svid` or absent are JWT authorities and
/// are held to the rules of [`SpiffeBundle::parse`] (a unique, non-empty
/// `kid`, a well-formed EC P-256/P-384 or RSA key); keys for any other use
/// are skipped, as are key types this crate cannot verify.
///
/// # Errors
///
/// [`BundleError::TooLarge`] before reading anything if `jwks` passes
/// [`MAX_BUNDLE_BYTES`]; otherwise the first problem, naming the entry
/// (`keys[i]`) at fault, as [`SpiffeBundle::parse`] reports it.
pub fn jwt_bundle_from_jwks(
    trust_domain: TrustDomain,
    jwks: &[u8],
) -> Result<SpiffeBundle, BundleError> {
    if jwks.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge {
            len: jwks.len(),
            max: MAX_BUNDLE_BYTES,
        });
    }
    let mut document: Value =
        serde_json::from_slice(jwks).map_err(|e| BundleError::InvalidJson {
            line: e.line(),
            column: e.column(),
        })?;
    // A JWK Set says `"use": "sig"` (or nothing) where a SPIFFE bundle says
    // `"use": "jwt-svid"`; relabel, and let the bundle parser's strict
    // checks do the rest. Entries keep their positions, so its errors'
    // `keys[i]` still point into this document.
    if let Some(Value::Array(keys)) = document.get_mut("keys") {
        for key in keys.iter_mut().filter_map(Value::as_object_mut) {
            let relabel = match key.get("use") {
                None => Some("jwt-svid"),
                Some(Value::String(key_use)) if key_use == "sig" => Some("jwt-svid"),
                Some(Value::String(key_use)) if key_use == "jwt-svid" => None,
                // Any other use (`enc`, `x509-svid` …) is not a JWT-SVID
                // authority: relabel it to a use the parser skips.
                Some(_) => Some("not-jwt-svid"),
            };
            if let Some(label) = relabel {
                key.insert("use".to_owned(), Value::from(label));
            }
        }
    }
    let mut bundle = SpiffeBundle::parse(trust_domain, document.to_string().as_bytes())?;
    bundle.x509_authorities.clear();
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::JwtPublicKey;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn authority(kid: &str) -> JwtAuthority {
        // A valid P-256 point: the generator.
        let x = hex_32("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
        let y = hex_32("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
        JwtAuthority {
            key_id: kid.to_owned(),
            public_key: JwtPublicKey::EcP256 { x, y },
        }
    }

    fn hex_32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn a_jwks_as_the_agent_serves_it_parses() {
        let mut bundle = SpiffeBundle::new(td());
        bundle.jwt_authorities = vec![authority("k1"), authority("k2")];
        let jwks = bundle.to_jwks_json().unwrap();
        let parsed = jwt_bundle_from_jwks(td(), jwks.as_bytes()).unwrap();
        assert_eq!(parsed.jwt_authorities, bundle.jwt_authorities);
    }

    #[test]
    fn keys_without_use_count_and_other_uses_are_skipped() {
        let mut jwk = authority("k1").to_jwk();
        jwk.as_object_mut().unwrap().remove("use");
        let mut enc = authority("k2").to_jwk();
        enc["use"] = "enc".into();
        let jwks = serde_json::json!({ "keys": [jwk, enc] }).to_string();
        let parsed = jwt_bundle_from_jwks(td(), jwks.as_bytes()).unwrap();
        assert_eq!(parsed.jwt_authorities, vec![authority("k1")]);
    }

    #[test]
    fn malformed_jwks_are_refused_with_the_entry_at_fault() {
        let (a, b) = (authority("k1").to_jwk(), authority("k1").to_jwk());
        let duplicate = serde_json::json!({ "keys": [a, b] }).to_string();
        assert_eq!(
            jwt_bundle_from_jwks(td(), duplicate.as_bytes()),
            Err(BundleError::DuplicateKeyId { kid: "k1".into() })
        );
        let mut no_kid = authority("k1").to_jwk();
        no_kid.as_object_mut().unwrap().remove("kid");
        let no_kid = serde_json::json!({ "keys": [no_kid] }).to_string();
        assert_eq!(
            jwt_bundle_from_jwks(td(), no_kid.as_bytes()),
            Err(BundleError::MissingKeyId { index: 0 })
        );
        assert!(matches!(
            jwt_bundle_from_jwks(td(), b"{\"keys\": ["),
            Err(BundleError::InvalidJson { .. })
        ));
        assert_eq!(
            jwt_bundle_from_jwks(td(), b"{}"),
            Err(BundleError::MissingKeys)
        );
        let huge = vec![b' '; MAX_BUNDLE_BYTES + 1];
        assert!(matches!(
            jwt_bundle_from_jwks(td(), &huge),
            Err(BundleError::TooLarge { .. })
        ));
    }
}
