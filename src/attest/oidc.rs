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
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::jwks::JwksCache;
use super::jwt_evidence::{self, JwtRules};
use super::{AttestError, Attestation, selector, sha256_hex, truncated};
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
    /// A sentence for the operator naming the alias: no issuer, an alias
    /// that is not a selector-safe label, a repeated alias or issuer, an
    /// empty issuer or audience, not exactly one JWKS source, a claim name
    /// that is empty, repeated or contains `:` or spaces, no identity claim
    /// among `claims`, a zero `max_token_age`, or keys that cannot be loaded.
    pub fn new(issuers: &[OidcIssuerConfig]) -> Result<Self, String> {
        if issuers.is_empty() {
            return Err("no issuer is configured".to_owned());
        }
        let mut aliases = HashSet::new();
        let mut issuer_urls = HashSet::new();
        let mut built = Vec::with_capacity(issuers.len());
        for config in issuers {
            jwt_evidence::check_label("alias", &config.alias)?;
            let alias = &config.alias;
            let context = |e: String| format!("issuer {alias}: {e}");
            if !aliases.insert(alias.as_str()) {
                return Err(context("the alias is used by another issuer".to_owned()));
            }
            if !issuer_urls.insert(config.issuer.as_str()) {
                return Err(context(format!(
                    "issuer {} is configured twice",
                    config.issuer
                )));
            }
            check_claim_names("claims", &config.claims).map_err(context)?;
            check_claim_names("identity_claims", &config.identity_claims).map_err(context)?;
            let identity_claims: Vec<String> = config
                .identity_claims
                .iter()
                .filter(|claim| config.claims.contains(claim))
                .cloned()
                .collect();
            if identity_claims.is_empty() {
                return Err(context(
                    "claims must include at least one of identity_claims, or no entry could safely use this issuer"
                        .to_owned(),
                ));
            }
            let (rules, keys) =
                jwt_evidence::issuer_rules_and_keys(&jwt_evidence::IssuerSettings {
                    issuer: &config.issuer,
                    audience: &config.audience,
                    jwks_file: config.jwks_file.as_deref(),
                    discovery_url: config.discovery_url.as_deref(),
                    jwks: config.jwks.as_deref(),
                    max_token_age: config.max_token_age,
                })
                .map_err(context)?;
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
    /// A sentence for the operator saying which selector is wrong and how to
    /// fix it.
    pub fn check_entry_selectors(&self, selectors: &[Selector]) -> Result<(), String> {
        // alias -> whether an identity claim is constrained (sorted, so the
        // error names the same alias every time).
        let mut used: BTreeMap<&str, bool> = BTreeMap::new();
        for selector in selectors
            .iter()
            .filter(|selector| selector.kind() == "oidc")
        {
            let text = selector.as_str();
            let mut fields = text["oidc:".len()..].splitn(3, ':');
            let (Some(alias), claim, value) = (fields.next(), fields.next(), fields.next()) else {
                return Err(format!(
                    "selector {text} is not of the form oidc:<alias>:<claim>:<value>"
                ));
            };
            let issuer = self.issuers.iter().find(|issuer| issuer.alias == alias).ok_or_else(|| {
                format!(
                    "selector {text} names OIDC issuer {alias:?}, which is not configured on this server (configured: {})",
                    self.aliases()
                )
            })?;
            let (Some(claim), Some(value)) = (claim, value) else {
                return Err(format!(
                    "selector {text} is not of the form oidc:{alias}:<claim>:<value>"
                ));
            };
            if claim.is_empty() || value.is_empty() {
                return Err(format!(
                    "selector {text} is not of the form oidc:{alias}:<claim>:<value>"
                ));
            }
            if !issuer.claims.iter().any(|known| known == claim) {
                return Err(format!(
                    "selector {text}: issuer {alias} does not yield claim {claim:?}, so the entry could never match (it yields: {})",
                    issuer.claims.join(", ")
                ));
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
            let identity = self
                .issuers
                .iter()
                .find(|issuer| issuer.alias == alias)
                .map(|issuer| issuer.identity_claims.as_slice())
                .unwrap_or_default();
            let example = identity.first().map_or("sub", String::as_str);
            return Err(format!(
                "the oidc:{alias} selectors do not constrain who the workload is, so any workload that can get a token \
                 from that issuer would match; add a selector on one of {} (e.g. oidc:{alias}:{example}:<value>)",
                identity.join(", ")
            ));
        }
        Ok(())
    }

    fn aliases(&self) -> String {
        let aliases: Vec<&str> = self
            .issuers
            .iter()
            .map(|issuer| issuer.alias.as_str())
            .collect();
        aliases.join(", ")
    }
}

/// Claim names end up between `:` in selectors, and are what an entry's
/// selector is parsed back into: no `:`, nothing unprintable.
fn check_claim_names(field: &str, names: &[String]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for name in names {
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(format!(
                "{field}: {:?} must be 1-64 printable characters without ':' or spaces",
                truncated(name)
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("{field}: {name} is listed twice"));
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
