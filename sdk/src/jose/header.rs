//! What a JOSE header may hold, per use.
//!
//! Every use refuses `crit` (RFC 7515 §4.1.11: an extension we do not
//! understand must fail the token, and we understand none) and needs a
//! `kid`. Key-locating parameters (`jku`, `x5u`, `jwk`, `x5c`) are never
//! followed by any use: the key comes from the verifier's own trusted set.
//! Beyond that a use either allows exactly the parameters it names
//! (JWT-SVIDs: `alg`, `kid`, `typ`) or, for issuers Mayfly does not control,
//! ignores the rest (identity providers add `x5t` and friends).

use serde_json::{Map, Value};

use super::error::{JoseError, quoted};

/// The header parameters and `typ` values one use accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPolicy {
    /// `Some`: only these parameters; `None`: any but `crit`, the rest
    /// ignored.
    parameters: Option<&'static [&'static str]>,
    /// `Some`: `typ`, when present, must be one of these; `None`: any string.
    types: Option<&'static [&'static str]>,
}

impl HeaderPolicy {
    /// JWT-SVIDs (JWT-SVID.md §2): `alg`, `kid` and `typ` only; `typ`, if
    /// present, `JWT` or `JOSE`.
    pub const JWT_SVID: Self = Self {
        parameters: Some(&["alg", "kid", "typ"]),
        types: Some(&["JWT", "JOSE"]),
    };

    /// Tokens of outside issuers (Kubernetes, OIDC providers): any parameter
    /// but `crit`, ignored; any `typ`.
    pub const ISSUER_TOKEN: Self = Self {
        parameters: None,
        types: None,
    };

    /// Checks `members`, whose `alg` (passed in, already read) the caller
    /// judges separately, and returns what the header says. A missing `kid`
    /// is left to the caller too: reading a header is not choosing a key.
    ///
    /// # Errors
    ///
    /// [`JoseError::UnexpectedHeader`] for a parameter the policy does not
    /// allow, [`JoseError::CriticalHeader`] for `crit`,
    /// [`JoseError::InvalidHeaderType`] for a `kid` that is not a non-empty
    /// string or a `typ` that is not a string, [`JoseError::UnsupportedType`]
    /// for a `typ` the policy does not accept.
    pub fn check(&self, members: &Map<String, Value>, alg: &str) -> Result<JoseHeader, JoseError> {
        if let Some(allowed) = self.parameters
            && let Some(name) = members
                .keys()
                .find(|name| !allowed.contains(&name.as_str()))
        {
            return Err(JoseError::UnexpectedHeader {
                name: quoted(name),
                allowed,
            });
        }
        if members.contains_key("crit") {
            return Err(JoseError::CriticalHeader);
        }
        let kid = match members.get("kid") {
            None => None,
            Some(Value::String(kid)) if !kid.is_empty() => Some(kid.clone()),
            Some(_) => {
                return Err(JoseError::InvalidHeaderType {
                    name: "kid",
                    expected: "a non-empty string",
                });
            }
        };
        let typ = match members.get("typ") {
            None => None,
            Some(Value::String(typ)) => Some(typ.clone()),
            Some(_) => {
                return Err(JoseError::InvalidHeaderType {
                    name: "typ",
                    expected: "a string",
                });
            }
        };
        if let (Some(typ), Some(allowed)) = (&typ, self.types)
            && !allowed.contains(&typ.as_str())
        {
            return Err(JoseError::UnsupportedType {
                typ: quoted(typ),
                allowed,
            });
        }
        Ok(JoseHeader {
            alg: alg.to_owned(),
            kid,
            typ,
        })
    }
}

/// `alg`, read before anything else in the header.
///
/// # Errors
///
/// [`JoseError::MissingAlgorithm`], or [`JoseError::InvalidHeaderType`] if
/// it is not a string.
pub fn algorithm_name(members: &Map<String, Value>) -> Result<&str, JoseError> {
    match members.get("alg") {
        Some(Value::String(alg)) => Ok(alg),
        Some(_) => Err(JoseError::InvalidHeaderType {
            name: "alg",
            expected: "a string",
        }),
        None => Err(JoseError::MissingAlgorithm),
    }
}

/// The header of a token, as far as it was checked.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    /// The signing algorithm, e.g. `ES256` (judged by the caller).
    pub alg: String,
    /// The key ID, if any.
    pub kid: Option<String>,
    /// The token type, if any.
    pub typ: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn members(header: Value) -> Map<String, Value> {
        let Value::Object(members) = header else {
            panic!("not an object")
        };
        members
    }

    fn check(policy: HeaderPolicy, header: Value) -> Result<JoseHeader, JoseError> {
        let members = members(header);
        let alg = algorithm_name(&members)?;
        policy.check(&members, alg)
    }

    #[test]
    fn jwt_svid_headers_have_alg_kid_typ_only() {
        let svid = HeaderPolicy::JWT_SVID;
        assert_eq!(
            check(svid, json!({"alg": "ES256", "kid": "k1", "typ": "JWT"})),
            Ok(JoseHeader {
                alg: "ES256".into(),
                kid: Some("k1".into()),
                typ: Some("JWT".into())
            })
        );
        for name in ["jku", "jwk", "x5u", "x5c", "x5t", "crit", "cty", "b64"] {
            let mut header = json!({"alg": "ES256", "kid": "k1"});
            header[name] = json!("https://attacker.example/keys");
            assert_eq!(
                check(svid, header),
                Err(JoseError::UnexpectedHeader {
                    name: name.into(),
                    allowed: &["alg", "kid", "typ"]
                }),
                "{name}"
            );
        }
        assert_eq!(
            check(svid, json!({"alg": "ES256", "typ": "at+jwt"})),
            Err(JoseError::UnsupportedType {
                typ: "at+jwt".into(),
                allowed: &["JWT", "JOSE"]
            })
        );
        assert!(check(svid, json!({"alg": "ES256", "typ": "JOSE"})).is_ok());
    }

    #[test]
    fn issuer_headers_ignore_extra_parameters_but_not_crit() {
        let issuer = HeaderPolicy::ISSUER_TOKEN;
        // GitHub Actions and Azure AD send x5t; a jku is never followed.
        let header = json!({"alg": "RS256", "kid": "k", "typ": "JWT", "x5t": "abc", "jku": "x"});
        assert_eq!(check(issuer, header).unwrap().kid.as_deref(), Some("k"));
        assert!(check(issuer, json!({"alg": "RS256", "typ": "at+jwt"})).is_ok());
        assert_eq!(
            check(issuer, json!({"alg": "RS256", "kid": "k", "crit": ["exp"]})),
            Err(JoseError::CriticalHeader)
        );
    }

    #[test]
    fn parameter_types_are_checked() {
        for policy in [HeaderPolicy::JWT_SVID, HeaderPolicy::ISSUER_TOKEN] {
            assert!(check(policy, json!({"alg": "ES256", "kid": "k"})).is_ok());
            assert_eq!(
                check(policy, json!({"kid": "k"})),
                Err(JoseError::MissingAlgorithm)
            );
            assert_eq!(
                check(policy, json!({"alg": ["ES256"]})),
                Err(JoseError::InvalidHeaderType {
                    name: "alg",
                    expected: "a string"
                })
            );
            for kid in [json!(1), json!(""), Value::Null] {
                assert_eq!(
                    check(policy, json!({"alg": "ES256", "kid": kid})),
                    Err(JoseError::InvalidHeaderType {
                        name: "kid",
                        expected: "a non-empty string"
                    })
                );
            }
            assert_eq!(
                check(policy, json!({"alg": "ES256", "typ": 1})),
                Err(JoseError::InvalidHeaderType {
                    name: "typ",
                    expected: "a string"
                })
            );
            // A header without kid is well-formed; choosing a key is later.
            assert_eq!(check(policy, json!({"alg": "ES256"})).unwrap().kid, None);
        }
    }
}
