//! The attestation layer's configuration-time errors: a bad `[attestors]`
//! section, and entry selectors no configured attestor could ever prove
//! safely. (Refusing evidence at run time is [`AttestError`](super::AttestError).)

use std::path::PathBuf;
use std::time::Duration;

use super::jwks::JwksError;
use super::x509pop::CaBundleError;

/// Why an attestor cannot be built from its `[attestors]` config. Every
/// message starts with the section (`attestors.oidc: issuer gh: ...`) and
/// names the cluster, issuer or file; variants with a source print it too.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestorConfigError {
    /// An attestor was built from an empty list of clusters or issuers.
    #[error("attestors.{attestor}: no {} is configured", item(attestor))]
    NothingConfigured {
        /// `k8s_psat` or `oidc`.
        attestor: &'static str,
    },
    /// A cluster name or OIDC alias cannot be part of a selector.
    #[error(
        "attestors.{attestor}: {field} {value:?} must be 1-63 lowercase letters, digits, '-' or '_'"
    )]
    InvalidName {
        /// `k8s_psat` or `oidc`.
        attestor: &'static str,
        /// `cluster name` or `alias`.
        field: &'static str,
        /// The value, truncated.
        value: String,
    },
    /// Two clusters, or two OIDC issuers, have the same name.
    #[error(
        "attestors.{attestor}: {} {name}: the {} is used by another {}",
        item(attestor),
        name_field(attestor),
        item(attestor)
    )]
    DuplicateName {
        /// `k8s_psat` or `oidc`.
        attestor: &'static str,
        /// The cluster name or alias.
        name: String,
    },
    /// Two clusters, or two OIDC issuers, have the same issuer URL: a token
    /// could not say which one it is from.
    #[error(
        "attestors.{attestor}: {} {name}: issuer {issuer} is used by another {}",
        item(attestor),
        item(attestor)
    )]
    DuplicateIssuer {
        /// `k8s_psat` or `oidc`.
        attestor: &'static str,
        /// The cluster name or alias.
        name: String,
        /// The issuer URL.
        issuer: String,
    },
    /// `issuer` or `audience` is empty.
    #[error(
        "attestors.{attestor}: {} {name}: issuer and audience must not be empty",
        item(attestor)
    )]
    EmptyIssuerOrAudience {
        /// `k8s_psat` or `oidc`.
        attestor: &'static str,
        /// The cluster name or alias.
        name: String,
    },
    /// `max_token_age` is zero: every token would be too old.
    #[error(
        "attestors.{attestor}: {} {name}: max_token_age must be more than zero",
        item(attestor)
    )]
    ZeroMaxTokenAge {
        /// `k8s_psat` or `oidc`.
        attestor: &'static str,
        /// The cluster name or alias.
        name: String,
    },
    /// Not exactly one of `jwks_file`, `discovery_url`, `jwks` is set.
    #[error(
        "attestors.{attestor}: {} {name}: set exactly one of jwks_file, discovery_url, jwks",
        item(attestor)
    )]
    JwksSource {
        /// `k8s_psat` or `oidc`.
        attestor: &'static str,
        /// The cluster name or alias.
        name: String,
    },
    /// The issuer's signing keys cannot be loaded.
    #[error(
        "attestors.{attestor}: {} {name}: JWKS of issuer {issuer}: {source}",
        item(attestor)
    )]
    Jwks {
        /// `k8s_psat` or `oidc`.
        attestor: &'static str,
        /// The cluster name or alias.
        name: String,
        /// The issuer URL.
        issuer: String,
        /// Why.
        #[source]
        source: JwksError,
    },
    /// An OIDC claim name cannot be part of a selector.
    #[error(
        "attestors.oidc: issuer {alias}: {field}: {claim:?} must be 1-64 printable characters without ':' or spaces"
    )]
    InvalidClaimName {
        /// The issuer's alias.
        alias: String,
        /// `claims` or `identity_claims`.
        field: &'static str,
        /// The claim name, truncated.
        claim: String,
    },
    /// An OIDC claim is listed twice.
    #[error("attestors.oidc: issuer {alias}: {field}: {claim} is listed twice")]
    DuplicateClaimName {
        /// The issuer's alias.
        alias: String,
        /// `claims` or `identity_claims`.
        field: &'static str,
        /// The claim name.
        claim: String,
    },
    /// None of an OIDC issuer's `identity_claims` is among its `claims`, so
    /// no entry could ever say who may use it.
    #[error(
        "attestors.oidc: issuer {alias}: claims must include at least one of identity_claims, or no entry could safely use this issuer"
    )]
    NoIdentityClaim {
        /// The issuer's alias.
        alias: String,
    },
    /// `challenge_ttl` is out of bounds.
    #[error(
        "attestors.x509pop: challenge_ttl must be between {} and {}, not {}",
        human(.min), human(.max), human(.ttl)
    )]
    ChallengeTtl {
        /// The configured TTL.
        ttl: Duration,
        /// The shortest accepted.
        min: Duration,
        /// The longest accepted.
        max: Duration,
    },
    /// An attestor configuration's `environments` pin is empty, holds
    /// something that is not an environment, or names one twice.
    #[error("attestors.{section}: environments: {reason}")]
    InvalidEnvironments {
        /// The section: `k8s_psat: cluster prod`, `oidc: issuer gh`, `x509pop`.
        section: String,
        /// What is wrong, naming the value.
        reason: String,
    },
    /// The CA bundle file cannot be read.
    #[error("attestors.x509pop: cannot read ca_bundle {}: {source}", .path.display())]
    ReadCaBundle {
        /// The configured `ca_bundle`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA bundle holds something other than CA certificates, or none.
    #[error("attestors.x509pop: {}: {source}", bundle_name(.path))]
    CaBundle {
        /// The configured `ca_bundle`; `None` for a bundle given in memory.
        path: Option<PathBuf>,
        /// What is wrong with it.
        #[source]
        source: CaBundleError,
    },
}

/// Why an entry's selectors are refused when it is created or updated: they
/// name an attestor or issuer this server does not have, could never
/// match, or would trust far more workloads than the operator means to.
/// The caller's mistake: the admin API answers `InvalidArgument`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntrySelectorError {
    /// Selectors of an attestor that is not configured on this server.
    #[error(
        "{attestor} selectors need an [[attestors.{attestor}]] issuer configured on this server"
    )]
    AttestorNotConfigured {
        /// The attestor (`oidc`).
        attestor: &'static str,
    },
    /// An `oidc:` selector that is not `oidc:<alias>:<claim>:<value>`.
    #[error(
        "selector {selector} is not of the form oidc:{}:<claim>:<value>",
        .alias.as_deref().unwrap_or("<alias>")
    )]
    MalformedOidc {
        /// The selector.
        selector: String,
        /// Its alias, when it has one.
        alias: Option<String>,
    },
    /// An `oidc:` selector naming an issuer alias that is not configured.
    #[error(
        "selector {selector} names OIDC issuer {alias:?}, which is not configured on this server (configured: {})",
        .configured.join(", ")
    )]
    UnknownIssuer {
        /// The selector.
        selector: String,
        /// The alias it names.
        alias: String,
        /// The configured aliases.
        configured: Vec<String>,
    },
    /// An `oidc:` selector on a claim the issuer never yields: the entry
    /// could never match.
    #[error(
        "selector {selector}: issuer {alias} does not yield claim {claim:?}, so the entry could never match (it yields: {})",
        .yielded.join(", ")
    )]
    UnknownClaim {
        /// The selector.
        selector: String,
        /// The issuer's alias.
        alias: String,
        /// The claim it names.
        claim: String,
        /// The claims the issuer yields.
        yielded: Vec<String>,
    },
    /// An entry's selectors on an OIDC issuer constrain none of its
    /// identity claims, so any workload that can get a token from that
    /// issuer (any repository on GitHub) would match.
    #[error(
        "the oidc:{alias} selectors do not constrain who the workload is, so any workload that can get a token \
         from that issuer would match; add a selector on one of {} (e.g. oidc:{alias}:{}:<value>)",
        .identity_claims.join(", "),
        .identity_claims.first().map_or("sub", String::as_str)
    )]
    Unconstrained {
        /// The issuer's alias.
        alias: String,
        /// The issuer's identity claims (those it also yields).
        identity_claims: Vec<String>,
    },
}

/// What one element of an attestor's list is called in messages.
fn item(attestor: &str) -> &'static str {
    match attestor {
        "k8s_psat" => "cluster",
        _ => "issuer",
    }
}

/// The setting that names one element of an attestor's list.
fn name_field(attestor: &str) -> &'static str {
    match attestor {
        "k8s_psat" => "name",
        _ => "alias",
    }
}

fn human(duration: &Duration) -> humantime::FormattedDuration {
    humantime::format_duration(*duration)
}

fn bundle_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!("ca_bundle {}", path.display()),
        None => "CA bundle".to_owned(),
    }
}
