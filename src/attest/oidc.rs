//! OIDC ID tokens from CI systems and clouds (GitHub Actions, GitLab CI,
//! ...).
//!
//! Each trusted issuer has an alias. The attestor picks the issuer by the
//! token's `iss`, verifies the token strictly with that issuer's keys
//! ([`jwt_evidence`]), and yields
//! `oidc:<alias>:<claim>:<value>` for each configured claim the token has:
//! strings as they are, booleans and numbers rendered, arrays and objects
//! skipped, and values that cannot be a selector (spaces, non-ASCII, too
//! long) skipped too — fewer selectors can only match fewer entries. `sub`
//! is required.
//!
//! Any repository on GitHub can get a token from GitHub's issuer, so an
//! entry that only says `oidc:gh:ref:refs/heads/main` would trust every
//! main branch in the world. [`OidcAttestor::check_entry_selectors`] refuses
//! such entries: each issuer an entry uses must be constrained on at least
//! one of its identity claims (`sub`, `repository`, ...).
//!
//! ```toml
//! [[attestors.oidc]]
//! alias = "gh"
//! issuer = "https://token.actions.githubusercontent.com"
//! discovery_url = "https://token.actions.githubusercontent.com/.well-known/openid-configuration"
//! audience = "mayfly"
//! claims = ["sub", "repository", "ref", "environment", "workflow_ref"]  # the default
//! identity_claims = ["sub", "repository", "repository_id", "project_path"]  # the default
//! max_token_age = "1h"  # the default
//! environments = ["prod"]  # optional pin; unset: any
//! ```
//!
//! `environments` pins the environments this issuer may yield: an entry it
//! matches with another environment is refused at attestation (audited).
//! Checked at load: not empty, valid environment names, none twice.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::jwks::JwksCache;
use super::jwt_evidence::{self, JwtRules};
use super::{
    AttestError, Attestation, AttestorConfigError, EntrySelectorError, selector, sha256_hex,
    truncated,
};
use crate::policy::Selector;

const ATTESTOR: &str = "oidc";

/// The claims that become selectors unless configured otherwise.
pub const DEFAULT_CLAIMS: &[&str] = &["sub", "repository", "ref", "environment", "workflow_ref"];

/// The claims that identify a workload (as opposed to describing it)
/// unless configured otherwise.
pub const DEFAULT_IDENTITY_CLAIMS: &[&str] =
    &["sub", "repository", "repository_id", "project_path"];

/// One trusted issuer, `[[attestors.oidc]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// The issuer's name in selectors (`oidc:<alias>:...`): 1–63 of
    /// `[a-z0-9_-]`.
    pub alias: String,
    /// The exact `iss` of the issuer's tokens.
    pub issuer: String,
    /// A JWKS file holding the issuer's signing keys.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The issuer's OIDC discovery URL
    /// (`<issuer>/.well-known/openid-configuration`).
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// A JWKS document, inline.
    #[serde(default)]
    pub jwks: Option<String>,
    /// The audience the workloads request their tokens for.
    pub audience: String,
    /// The claims that become selectors (default [`DEFAULT_CLAIMS`]).
    #[serde(default = "default_claims")]
    pub claims: Vec<String>,
    /// The claims that identify a workload (default
    /// [`DEFAULT_IDENTITY_CLAIMS`]); an entry using this issuer must
    /// constrain at least one that is also in `claims`.
    #[serde(default = "default_identity_claims")]
    pub identity_claims: Vec<String>,
    /// Tokens issued longer ago than this are refused (default 1h).
    #[serde(default, deserialize_with = "jwt_evidence::optional_duration")]
    pub max_token_age: Option<Duration>,
    /// The only environments an entry attested through this issuer may
    /// have, e.g. `["staging", "test"]`; unset: no pin. Checked at
    /// attestation, refusing (and auditing) any other entry.
    #[serde(default)]
    pub environments: Option<Vec<String>>,
}

fn default_claims() -> Vec<String> {
    DEFAULT_CLAIMS
        .iter()
        .map(|claim| (*claim).to_owned())
        .collect()
}

fn default_identity_claims() -> Vec<String> {
    DEFAULT_IDENTITY_CLAIMS
        .iter()
        .map(|claim| (*claim).to_owned())
        .collect()
}

/// Verifies ID tokens from the configured OIDC issuers.
#[derive(Debug)]
pub struct OidcAttestor {
    issuers: Vec<Issuer>,
}

#[derive(Debug)]
struct Issuer {
    alias: String,
    rules: JwtRules,
    keys: JwksCache,
    claims: Vec<String>,
    /// The identity claims that are also in `claims`: only those can ever
    /// be proven, so only those can constrain an entry.
    identity_claims: Vec<String>,
}

impl OidcAttestor {
    /// Builds the attestor; JWKS files and inline documents are parsed now.
    ///
    /// # Errors
    ///
    /// An [`AttestorConfigError`] naming the alias:
    /// [`NothingConfigured`](AttestorConfigError::NothingConfigured) without
    /// an issuer, [`InvalidName`](AttestorConfigError::InvalidName) for an
    /// alias that is not a selector-safe label,
    /// [`DuplicateName`](AttestorConfigError::DuplicateName) or
    /// [`DuplicateIssuer`](AttestorConfigError::DuplicateIssuer),
    /// [`InvalidClaimName`](AttestorConfigError::InvalidClaimName) or
    /// [`DuplicateClaimName`](AttestorConfigError::DuplicateClaimName) for a
    /// claim name that is empty, repeated or contains `:` or spaces,
    /// [`NoIdentityClaim`](AttestorConfigError::NoIdentityClaim) when no
    /// identity claim is among `claims`, and the errors of the issuer's
    /// shared settings (as [`K8sPsatAttestor::new`](super::k8s_psat::K8sPsatAttestor::new)).
    pub fn new(issuers: &[OidcIssuerConfig]) -> Result<Self, AttestorConfigError> {
        if issuers.is_empty() {
            return Err(AttestorConfigError::NothingConfigured { attestor: ATTESTOR });
        }
        let mut aliases = HashSet::new();
        let mut issuer_urls = HashSet::new();
        let mut built = Vec::with_capacity(issuers.len());
        for config in issuers {
            let alias = &config.alias;
            if !jwt_evidence::is_label(alias) {
                return Err(AttestorConfigError::InvalidName {
                    attestor: ATTESTOR,
                    field: "alias",
                    value: truncated(alias),
                });
            }
            if !aliases.insert(alias.as_str()) {
                return Err(AttestorConfigError::DuplicateName {
                    attestor: ATTESTOR,
                    name: alias.clone(),
                });
            }
            if !issuer_urls.insert(config.issuer.as_str()) {
                return Err(AttestorConfigError::DuplicateIssuer {
                    attestor: ATTESTOR,
                    name: alias.clone(),
                    issuer: config.issuer.clone(),
                });
            }
            check_claim_names(alias, "claims", &config.claims)?;
            check_claim_names(alias, "identity_claims", &config.identity_claims)?;
            let identity_claims: Vec<String> = config
                .identity_claims
                .iter()
                .filter(|claim| config.claims.contains(claim))
                .cloned()
                .collect();
            if identity_claims.is_empty() {
                return Err(AttestorConfigError::NoIdentityClaim {
                    alias: alias.clone(),
                });
            }
            let (rules, keys) =
                jwt_evidence::issuer_rules_and_keys(&jwt_evidence::IssuerSettings {
                    attestor: ATTESTOR,
                    name: alias,
                    issuer: &config.issuer,
                    audience: &config.audience,
                    jwks_file: config.jwks_file.as_deref(),
                    discovery_url: config.discovery_url.as_deref(),
                    jwks: config.jwks.as_deref(),
                    max_token_age: config.max_token_age,
                })?;
            built.push(Issuer {
                alias: alias.clone(),
                rules,
                keys,
                claims: config.claims.clone(),
                identity_claims,
            });
        }
        Ok(OidcAttestor { issuers: built })
    }

    /// Verifies an ID token at `now` (unix seconds) and returns what it
    /// proves.
    ///
    /// # Errors
    ///
    /// [`AttestError::UntrustedIssuer`] when no configured issuer has the
    /// token's `iss`; every error of [`jwt_evidence::verify`];
    /// [`AttestError::MissingClaim`] without a string `sub`;
    /// [`AttestError::BadClaimValue`] when `sub` is a configured claim and
    /// cannot be a selector.
    pub async fn attest(&self, token: &str, now: i64) -> Result<Attestation, AttestError> {
        let peeked = jwt_evidence::peek(token)?;
        let issuer = self
            .issuers
            .iter()
            .find(|issuer| issuer.rules.issuer == peeked.issuer)
            .ok_or_else(|| AttestError::UntrustedIssuer {
                found: truncated(&peeked.issuer),
            })?;
        let claims = jwt_evidence::verify(token, &issuer.rules, &issuer.keys, now).await?;
        let Some(Value::String(subject)) = claims.get("sub") else {
            return Err(AttestError::MissingClaim {
                claim: "sub".to_owned(),
                expected: "string",
            });
        };

        let mut selectors = Vec::with_capacity(issuer.claims.len());
        for claim in &issuer.claims {
            let value = match claims.get(claim) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Bool(flag)) => flag.to_string(),
                Some(Value::Number(number)) => number.to_string(),
                _ => continue,
            };
            let prefix = format!("oidc:{}:{claim}:", issuer.alias);
            match selector(&prefix, claim, &value) {
                Ok(selector) => selectors.push(selector),
                // The subject is what the audit log names: it must be sound.
                Err(e) if claim == "sub" => return Err(e),
                Err(_) => {
                    tracing::debug!(alias = %issuer.alias, %claim, "claim value cannot be a selector; skipped");
                }
            }
        }
        selectors.sort();
        selectors.dedup();

        let namespace = format!("oidc:{}", issuer.alias);
        Ok(Attestation {
            attestor: ATTESTOR,
            subject: format!("{namespace}:{}", printable(subject)),
            selectors,
            evidence_sha256: sha256_hex(token.as_bytes()),
            replay: Some(jwt_evidence::replay_guard(
                &namespace,
                token,
                &claims,
                issuer.rules.leeway,
            )?),
        })
    }

    /// The over-broad trust guard, for an entry being created or updated:
    /// for each issuer alias the entry's `oidc:` selectors use, at least one
    /// selector must be on an identity claim of that issuer. Selectors
    /// naming an unknown alias, or a claim the issuer never yields (so the
    /// entry could never match), are refused too.
    ///
    /// # Errors
    ///
    /// [`EntrySelectorError::MalformedOidc`] for a selector that is not
    /// `oidc:<alias>:<claim>:<value>`, [`EntrySelectorError::UnknownIssuer`]
    /// for an alias that is not configured,
    /// [`EntrySelectorError::UnknownClaim`] for a claim the issuer never
    /// yields, and [`EntrySelectorError::Unconstrained`] when no selector
    /// on an issuer is on one of its identity claims. Each message says
    /// which selector is wrong and how to fix it.
    pub fn check_entry_selectors(&self, selectors: &[Selector]) -> Result<(), EntrySelectorError> {
        // alias -> whether an identity claim is constrained (sorted, so the
        // error names the same alias every time).
        let mut used: BTreeMap<&str, bool> = BTreeMap::new();
        for selector in selectors
            .iter()
            .filter(|selector| selector.kind() == "oidc")
        {
            let text = selector.as_str();
            let malformed = |alias: Option<&str>| EntrySelectorError::MalformedOidc {
                selector: text.to_owned(),
                alias: alias.map(str::to_owned),
            };
            let mut fields = text["oidc:".len()..].splitn(3, ':');
            let (Some(alias), claim, value) = (fields.next(), fields.next(), fields.next()) else {
                return Err(malformed(None));
            };
            let issuer = self
                .issuers
                .iter()
                .find(|issuer| issuer.alias == alias)
                .ok_or_else(|| EntrySelectorError::UnknownIssuer {
                    selector: text.to_owned(),
                    alias: alias.to_owned(),
                    configured: self.aliases(),
                })?;
            let (Some(claim), Some(value)) = (claim, value) else {
                return Err(malformed(Some(alias)));
            };
            if claim.is_empty() || value.is_empty() {
                return Err(malformed(Some(alias)));
            }
            if !issuer.claims.iter().any(|known| known == claim) {
                return Err(EntrySelectorError::UnknownClaim {
                    selector: text.to_owned(),
                    alias: alias.to_owned(),
                    claim: claim.to_owned(),
                    yielded: issuer.claims.clone(),
                });
            }
            let identifies = issuer
                .identity_claims
                .iter()
                .any(|identity| identity == claim);
            *used.entry(issuer.alias.as_str()).or_default() |= identifies;
        }
        for (alias, identified) in used {
            if identified {
                continue;
            }
            let identity_claims = self
                .issuers
                .iter()
                .find(|issuer| issuer.alias == alias)
                .map(|issuer| issuer.identity_claims.clone())
                .unwrap_or_default();
            return Err(EntrySelectorError::Unconstrained {
                alias: alias.to_owned(),
                identity_claims,
            });
        }
        Ok(())
    }

    fn aliases(&self) -> Vec<String> {
        self.issuers
            .iter()
            .map(|issuer| issuer.alias.clone())
            .collect()
    }
}

/// Claim names end up between `:` in selectors, and are what an entry's
/// selector is parsed back into: no `:`, nothing unprintable.
fn check_claim_names(
    alias: &str,
    field: &'static str,
    names: &[String],
) -> Result<(), AttestorConfigError> {
    let mut seen = HashSet::new();
    for name in names {
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(AttestorConfigError::InvalidClaimName {
                alias: alias.to_owned(),
                field,
                claim: truncated(name),
            });
        }
        if !seen.insert(name.as_str()) {
            return Err(AttestorConfigError::DuplicateClaimName {
                alias: alias.to_owned(),
                field,
                claim: name.clone(),
            });
        }
    }
    Ok(())
}

/// The subject for the audit log: truncated, and with control characters
/// replaced so a hostile `sub` cannot forge log lines.
fn printable(subject: &str) -> String {
    let cleaned: String = subject
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    truncated(&cleaned)
}

#[cfg(test)]
mod tests;
