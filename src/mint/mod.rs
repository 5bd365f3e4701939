//! Minting: the decisions between an authenticated request and a signed
//! credential.
//!
//! Every operation follows the same order: check the input (nothing is
//! consumed by a bad request), find the entry in the in-process
//! [`crate::policy::EntryIndex`], check the entry allows it,
//! sign, append the audit record and wait until it is durable, and only then
//! hand the credential out. Refusals are audited too.
//!
//! A JWT-SVID is reused for the same entry, audience and TTL until half its
//! lifetime has passed ([`JwtSvidCache`]), unless the entry requires a
//! unique `jti`; every check runs before the cache is consulted, and every
//! mint, reused or not, is audited. So a token cached for an entry that was
//! disabled (or expired) since is never handed out: the entry check refuses
//! first. The audience registry ([`crate::audience::check_mint`]: the
//! audience's environment and data class against the entry's) is one of
//! those checks, so a registry change applies to cached tokens too.

mod error;
mod jwt_cache;
mod usage;
mod verified;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use arc_swap::ArcSwap;
use mayfly_ca::{CertificateAuthority, IssuedX509Svid, X509SvidRequest};
use mayfly_sdk::SpiffeId;
use mayfly_sdk::bundle::JwtAuthority;
use mayfly_sdk::jwt::{Audience, JwtSvidValidator, ValidatedJwtSvid};
use mayfly_sdk::revocation::{RevocationError, RevocationSet};

use crate::attest::join_token::{JoinTokenRecord, JoinTokenSecret, TokenHash};
use crate::attest::{Attestation, Attestors, Evidence};
use crate::audience::{AudienceIndex, AudiencePolicy};
use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::breakglass::{Breakglass, GrantUse, IssuedCredential, IssuedKind, UseRefused};
use crate::clock::Clock;
use crate::policy::{ActiveGrant, CredentialKind, Entry, EntryIndex};
use crate::store::{RedeemError, Store};
use crate::telemetry::BrokerMetrics;

pub use error::{
    AgentEnvironment, AttestorEnvironment, Denied, Internal, InvalidRequest, MintError,
    Unavailable, Unproven,
};
pub use jwt_cache::{CachedJwt, JwtCacheKey, JwtSvidCache};
pub use usage::{Minted, UsageDetail, UsageTracker};
pub use verified::VerifiedTokens;

/// The JWT-SVID claim holding the entry's environment, with `[jwt]
/// governance_claims` (a private claim name, prefixed so that it cannot
/// collide with a registered or SPIFFE one).
pub const GOVERNANCE_ENV_CLAIM: &str = "mayfly_env";
/// The JWT-SVID claim holding the entry's data class, with `[jwt]
/// governance_claims`.
pub const GOVERNANCE_CLASS_CLAIM: &str = "mayfly_data_class";

/// A caller authenticated by the X509-SVID it presented over mTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The SPIFFE ID in the certificate's URI SAN.
    pub spiffe_id: SpiffeId,
    /// The certificate's serial: lowercase hex without leading zeros.
    pub serial: String,
    /// The certificate's `notBefore`, Unix seconds.
    pub not_before: i64,
}

/// A freshly issued X509-SVID and the entry it was issued for.
#[derive(Debug)]
pub struct X509Issued {
    /// The entry.
    pub entry: Arc<Entry>,
    /// The certificate chain and its facts.
    pub svid: IssuedX509Svid,
    /// The break-glass grant it was issued under, if any.
    pub breakglass: Option<GrantUse>,
}

/// A freshly minted JWT-SVID. Debug does not print the token.
pub struct JwtIssued {
    /// The compact JWS.
    pub token: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `sub`.
    pub spiffe_id: SpiffeId,
    /// Its `exp`.
    pub expires_at: i64,
    /// The break-glass grant it was minted under, if any.
    pub breakglass: Option<GrantUse>,
}

impl std::fmt::Debug for JwtIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtIssued")
            .field("token", &"[redacted]")
            .field("jti", &self.jti)
            .field("spiffe_id", &self.spiffe_id)
            .field("expires_at", &self.expires_at)
            .field("breakglass", &self.breakglass)
            .finish()
    }
}

/// What the mint path is wired to: the pieces of the broker it reads and
/// writes, named, for [`Minter::new`].
#[derive(Debug)]
pub struct MinterParts {
    /// Signs every credential.
    pub ca: Arc<CertificateAuthority>,
    /// The registered entries.
    pub entries: Arc<EntryIndex>,
    /// Join tokens and attestation replay records.
    pub store: Arc<dyn Store>,
    /// Where every grant and refusal is recorded before an answer.
    pub audit: AuditLog,
    /// Last use and mint counts per entry.
    pub usage: Arc<UsageTracker>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The configured attestors.
    pub attestors: Arc<Attestors>,
    /// The revocation index every mint and validation checks.
    pub revocations: Arc<RevocationSet>,
    /// The clock leeway of JWT validation.
    pub leeway: Duration,
    /// Where outcomes are counted.
    pub metrics: Arc<BrokerMetrics>,
}

/// Everything the mint path needs, shared by the API handlers.
#[derive(Debug)]
pub struct Minter {
    ca: Arc<CertificateAuthority>,
    entries: Arc<EntryIndex>,
    store: Arc<dyn Store>,
    audit: AuditLog,
    usage: Arc<UsageTracker>,
    validator: ArcSwap<JwtSvidValidator>,
    verified: VerifiedTokens,
    jwt_cache: JwtSvidCache,
    leeway: Duration,
    clock: Arc<dyn Clock>,
    attestors: Arc<Attestors>,
    revocations: Arc<RevocationSet>,
    /// The configured caps: an entry made under a longer cap gets no more,
    /// so that rotation's "nothing it signed is still valid" holds.
    jwt_cap: u64,
    x509_cap: u64,
    /// The `iss` of every JWT-SVID: the OIDC discovery document's `issuer`.
    /// Set once, before serving ([`set_issuer`](Self::set_issuer)), because
    /// it can depend on the HTTP port the server bound after this was built.
    issuer: OnceLock<Box<str>>,
    metrics: Arc<BrokerMetrics>,
    /// The registered audiences and what is enforced about them.
    audiences: Arc<AudienceIndex>,
    audience_policy: AudiencePolicy,
    /// Whether JWT-SVIDs carry `mayfly_env` and `mayfly_data_class`.
    governance_claims: bool,
    /// Records and announces every credential issued under a break-glass
    /// grant; without it, no grant is applied.
    breakglass: OnceLock<Arc<Breakglass>>,
    /// The anomaly detectors, told of every outcome ([`crate::anomaly`]).
    anomaly: Option<Arc<crate::anomaly::Detector>>,
}

impl Minter {
    /// Wires the mint path on `parts`.
    ///
    /// # Errors
    ///
    /// [`MintError::Internal`] if the CA's JWT key cannot validate tokens.
    pub fn new(parts: MinterParts) -> Result<Self, MintError> {
        let MinterParts {
            ca,
            entries,
            store,
            audit,
            usage,
            clock,
            attestors,
            revocations,
            leeway,
            metrics,
        } = parts;
        let validator = build_validator(
            &ca,
            &[ca.jwt_signer().authority()],
            leeway,
            crate::policy::HARD_TTL_CAP,
        )?;
        Ok(Minter {
            ca,
            entries,
            store,
            audit,
            usage,
            validator: ArcSwap::from_pointee(validator),
            verified: VerifiedTokens::new(i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX)),
            jwt_cache: JwtSvidCache::new(),
            leeway,
            clock,
            attestors,
            revocations,
            jwt_cap: crate::policy::HARD_TTL_CAP.as_secs(),
            x509_cap: crate::policy::HARD_TTL_CAP.as_secs(),
            issuer: OnceLock::new(),
            metrics,
            audiences: Arc::new(AudienceIndex::default()),
            audience_policy: AudiencePolicy::default(),
            governance_claims: false,
            breakglass: OnceLock::new(),
            anomaly: None,
        })
    }

    /// Applies break-glass grants in force on entries from now on: each
    /// credential issued under one is recorded on the grant before it is
    /// handed out, and announced after its audit record. Set once, before
    /// serving (it needs the alert sink, made after the mint path); a second
    /// call changes nothing.
    pub fn set_breakglass(&self, breakglass: Arc<Breakglass>) {
        let _ = self.breakglass.set(breakglass);
    }

    /// Tells `detector` of every outcome (granted or refused, with its entry, caller and
    /// audience), synchronously and without I/O, before the audit record is written.
    #[must_use]
    pub fn with_anomaly(mut self, detector: Arc<crate::anomaly::Detector>) -> Self {
        self.anomaly = Some(detector);
        self
    }

    /// Counts one outcome in the anomaly detectors, if they run.
    fn observe<T>(&self, event: &AuditEvent, result: &Result<T, MintError>) {
        if let Some(detector) = &self.anomaly {
            let seen = match result {
                Ok(_) => crate::anomaly::Seen::Granted,
                Err(MintError::Ca(_) | MintError::Unavailable(_) | MintError::Internal(_)) => {
                    crate::anomaly::Seen::Failed
                }
                Err(_) => crate::anomaly::Seen::Refused,
            };
            detector.observe(event, seen);
        }
    }

    /// With `on`, every JWT-SVID carries the entry's environment
    /// (`mayfly_env`) and data class (`mayfly_data_class`), for relying
    /// parties that enforce them themselves (`[jwt] governance_claims`).
    #[must_use]
    pub fn with_governance_claims(mut self, on: bool) -> Self {
        self.governance_claims = on;
        self
    }

    /// Enforces the audience registry on every JWT-SVID mint (cached tokens
    /// too): `audiences` is the index the store's changes keep current,
    /// `policy` the configured data class order and whether unregistered
    /// audiences are refused. Without this, no audience is registered and
    /// unregistered ones are allowed.
    #[must_use]
    pub fn with_audiences(mut self, audiences: Arc<AudienceIndex>, policy: AudiencePolicy) -> Self {
        self.audiences = audiences;
        self.audience_policy = policy;
        self
    }

    /// Caps every credential's lifetime at the configured maximum, whatever
    /// its entry says (entries are checked against the caps when made; a
    /// cap lowered later applies from then on).
    ///
    /// `ValidateJwtSvid` then refuses a JWT-SVID that lives longer than the
    /// JWT cap (plus the leeway): this broker would not have minted it.
    #[must_use]
    pub fn with_ttl_caps(mut self, jwt: Duration, x509: Duration) -> Self {
        self.jwt_cap = jwt.as_secs().max(1);
        self.x509_cap = x509.as_secs().max(1);
        let validator = (*self.validator.load_full())
            .clone()
            .with_max_lifetime(self.jwt_max_lifetime());
        self.validator.store(Arc::new(validator));
        self
    }

    /// Puts `iss` = `issuer` into every JWT-SVID minted from now on: the
    /// `issuer` of the OIDC discovery document that serves the keys, so that
    /// relying parties which check `iss` against it accept the tokens. Call
    /// it once, before serving; until then tokens carry no `iss`.
    ///
    /// # Errors
    ///
    /// [`MintError::Internal`] if a different issuer was set before: tokens
    /// already handed out would name the other one.
    pub fn set_issuer(&self, issuer: &str) -> Result<(), MintError> {
        let set = self.issuer.get_or_init(|| issuer.into());
        if **set != *issuer {
            return Err(Internal::IssuerAlreadySet {
                set: set.to_string(),
                requested: issuer.to_owned(),
            }
            .into());
        }
        Ok(())
    }

    /// The longest JWT-SVID lifetime this broker mints, which is also the
    /// longest its validator accepts.
    fn jwt_max_lifetime(&self) -> Duration {
        Duration::from_secs(self.jwt_cap)
    }

    /// Validates JWT-SVIDs against these keys from now on: this replica's
    /// and every live replica's (several replicas share one trust domain).
    ///
    /// # Errors
    ///
    /// [`MintError::Internal`] if a key cannot be used; the old keys stay.
    pub fn set_jwt_authorities(&self, authorities: &[JwtAuthority]) -> Result<(), MintError> {
        let validator =
            build_validator(&self.ca, authorities, self.leeway, self.jwt_max_lifetime())?;
        self.validator.store(Arc::new(validator));
        self.verified.invalidate();
        Ok(())
    }

    /// The revocation index every mint and validation checks.
    pub fn revocations(&self) -> &Arc<RevocationSet> {
        &self.revocations
    }

    /// Refuses a caller whose certificate is revoked, or when the
    /// revocation index is too stale to say.
    fn check_caller(&self, caller: &Caller) -> Result<(), MintError> {
        let now = self.clock.unix_now();
        self.revocations
            .check_x509(&caller.spiffe_id, &caller.serial, caller.not_before, now)
            .map_err(|e| match e {
                RevocationError::Stale { .. } => Unavailable::Revocations(e).into(),
                _ => Unproven::CertificateRevoked(e).into(),
            })
    }

    /// Refuses to mint for an identity (or an agent above it) whose
    /// revocation is in force, or when the index is too stale to say.
    fn check_not_revoked(&self, entry: &Entry) -> Result<(), MintError> {
        self.revocations
            .check_fresh(self.clock.unix_now().saturating_mul(1000))
            .map_err(Unavailable::Revocations)?;
        let blocked = self
            .revocations
            .minting_blocked(&entry.spiffe_id)
            .or_else(|| {
                entry
                    .parent_id
                    .as_ref()
                    .and_then(|parent| self.revocations.minting_blocked(parent))
            });
        match blocked {
            Some(revocation) => Err(Denied::Revoked {
                spiffe_id: entry.spiffe_id.clone(),
                revocation,
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Redeems a join token and issues the X509-SVID of its entry.
    ///
    /// `requested` is the SPIFFE ID the caller asked for, if any: a token
    /// bound to another entry is refused (InvalidArgument) rather than
    /// answered with an identity the caller did not ask for, and the
    /// refusal does not spend the token.
    pub async fn attest_join_token(
        &self,
        token: &str,
        csr_der: &[u8],
        requested: Option<&str>,
    ) -> Result<X509Issued, MintError> {
        let mut event = AuditEvent {
            action: "attest".into(),
            actor: "anonymous".into(),
            detail: Some(join_token_detail(requested)),
            ..AuditEvent::default()
        };
        let result = self
            .attest_join_token_inner(token, csr_der, requested, &mut event)
            .await;
        self.finish(event, result).await
    }

    async fn attest_join_token_inner(
        &self,
        token: &str,
        csr_der: &[u8],
        requested: Option<&str>,
        event: &mut AuditEvent,
    ) -> Result<X509Issued, MintError> {
        let secret = JoinTokenSecret::parse(token).map_err(|_| Unproven::JoinTokenMalformed)?;
        let hash: TokenHash = secret.hash();
        event.actor = format!("join_token:{}", hash.token_id());
        event.evidence_sha256 = Some(hash.as_str().to_owned());
        // Check the request before redeeming, so a bad one does not burn the token.
        let csr = mayfly_ca::csr::parse_and_verify_csr(csr_der)?;
        let now = self.clock.unix_now();
        if let Some(wanted) = requested {
            self.check_join_token_binding(&hash, wanted, now, event)
                .await?;
        }
        let attest = mayfly_telemetry::stage("mint.attest");
        mayfly_telemetry::annotate(&attest, "mayfly.attestor", || "join_token");
        let record = async {
            // Redeeming is the attestation: a write to the store.
            self.redeem_join_token(&hash, now)
                .instrument(mayfly_telemetry::stage("mint.store"))
                .await
        }
        .instrument(attest)
        .await;
        self.metrics.attestation("join_token", record.is_ok());
        let record = record?;
        event.entry_id = Some(record.entry_id.to_string());
        let entry =
            self.entries
                .by_id(&record.entry_id)
                .ok_or_else(|| Denied::JoinTokenEntryGone {
                    entry_id: record.entry_id.clone(),
                })?;
        event.spiffe_id = Some(entry.spiffe_id.to_string());
        // Checked again after redeeming: the entry's SPIFFE ID may have been
        // changed since the look-up. The token is spent then, but the caller
        // still does not get an identity it did not ask for.
        if let Some(wanted) = requested {
            check_bound_to(&entry, wanted)?;
        }
        self.issue_x509(entry, &csr, event)
    }

    /// Refuses, without redeeming it, a join token whose entry is not
    /// `wanted`. A token that is unknown, used or expired passes: redeeming
    /// it reports that, in the same words as when no SPIFFE ID is asked for.
    async fn check_join_token_binding(
        &self,
        hash: &TokenHash,
        wanted: &str,
        now: i64,
        event: &mut AuditEvent,
    ) -> Result<(), MintError> {
        let record = self
            .store
            .join_token(hash)
            .await
            .map_err(Unavailable::JoinTokenLookup)?;
        let Some(record) = record else {
            return Ok(());
        };
        if record.used_at.is_some() || record.is_expired(now) {
            return Ok(());
        }
        let Some(entry) = self.entries.by_id(&record.entry_id) else {
            return Ok(());
        };
        event.entry_id = Some(record.entry_id.to_string());
        event.spiffe_id = Some(entry.spiffe_id.to_string());
        check_bound_to(&entry, wanted)
    }

    /// Marks the join token used (atomically, once) and returns its record.
    async fn redeem_join_token(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<JoinTokenRecord, MintError> {
        self.store
            .redeem_join_token(hash, now)
            .await
            .map_err(|e| match e {
                RedeemError::Unknown => Unproven::JoinTokenUnknown.into(),
                RedeemError::AlreadyUsed { used_at } => Unproven::JoinTokenUsed { used_at }.into(),
                RedeemError::Expired { expired_at } => {
                    Unproven::JoinTokenExpired { expired_at }.into()
                }
                RedeemError::Store(e) => MintError::from(Unavailable::JoinTokenRedeem(e)),
            })
    }

    /// Verifies platform evidence (Kubernetes, OIDC, x509pop) and issues the
    /// X509-SVID of the one entry it matches (or of `requested`, when it
    /// matches several).
    pub async fn attest_and_issue(
        &self,
        evidence: &Evidence,
        csr_der: &[u8],
        requested: Option<&str>,
    ) -> Result<X509Issued, MintError> {
        let mut event = AuditEvent {
            action: "attest".into(),
            actor: "anonymous".into(),
            detail: Some(serde_json::json!({ "attestor": evidence.attestor() })),
            ..AuditEvent::default()
        };
        let result = async {
            let csr = mayfly_ca::csr::parse_and_verify_csr(csr_der)?;
            let entry = self.attested_entry(evidence, requested, &mut event).await?;
            self.issue_x509(entry, &csr, &mut event)
        }
        .await;
        self.finish(event, result).await
    }

    /// Verifies platform evidence and mints a JWT-SVID for one allowed
    /// audience, in one call (a CI job's path).
    pub async fn mint_jwt_with_evidence(
        &self,
        evidence: &Evidence,
        audience: &str,
        ttl: Option<Duration>,
        requested: Option<&str>,
    ) -> Result<JwtIssued, MintError> {
        let mut event = AuditEvent {
            action: "jwt.mint".into(),
            actor: "anonymous".into(),
            audience: Some(audience.chars().take(256).collect()),
            detail: Some(serde_json::json!({ "attestor": evidence.attestor() })),
            ..AuditEvent::default()
        };
        let result = async {
            let audience = Audience::new(audience).map_err(InvalidRequest::Audience)?;
            let entry = self.attested_entry(evidence, requested, &mut event).await?;
            self.sign_jwt(&entry, &audience, ttl, &mut event)
        }
        .await;
        self.finish(event, result).await
    }

    /// Attests `evidence` and picks the entry it proves, recording both in
    /// the audit event.
    async fn attested_entry(
        &self,
        evidence: &Evidence,
        requested: Option<&str>,
        event: &mut AuditEvent,
    ) -> Result<Arc<Entry>, MintError> {
        let stage = mayfly_telemetry::stage("mint.attest");
        mayfly_telemetry::annotate(&stage, "mayfly.attestor", || evidence.attestor());
        let attestation = self
            .attestors
            .attest(evidence, self.store.as_ref(), self.clock.now())
            .instrument(stage)
            .await;
        self.metrics
            .attestation(evidence.attestor(), attestation.is_ok());
        let attestation = attestation.map_err(|e| {
            if let Some(sha) = evidence_hash(evidence) {
                event.evidence_sha256 = Some(sha);
            }
            MintError::Attestation(e)
        })?;
        event.actor = attestation.subject.clone();
        event.evidence_sha256 = Some(attestation.evidence_sha256.clone());
        event.detail = Some(serde_json::json!({
            "attestor": attestation.attestor,
            "selectors": attestation.selectors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }));
        let entry = {
            let _policy = mayfly_telemetry::stage("mint.policy").entered();
            self.select_entry(&attestation, requested)?
        };
        event.entry_id = Some(entry.id.to_string());
        event.spiffe_id = Some(entry.spiffe_id.to_string());
        check_attestor_environment(&self.attestors, &attestation, &entry)?;
        Ok(entry)
    }

    fn select_entry(
        &self,
        attestation: &Attestation,
        requested: Option<&str>,
    ) -> Result<Arc<Entry>, MintError> {
        let mut matches = self.entries.matching(&attestation.selectors);
        let proven = || {
            attestation
                .selectors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        if let Some(wanted) = requested {
            return matches
                .into_iter()
                .find(|e| e.spiffe_id.as_str() == wanted)
                .ok_or_else(|| {
                    Denied::EvidenceNotForRequested {
                        requested: wanted.to_owned(),
                        proven: proven(),
                    }
                    .into()
                });
        }
        if matches.len() > 1 {
            return Err(InvalidRequest::AmbiguousEvidence {
                spiffe_ids: matches.iter().map(|e| e.spiffe_id.clone()).collect(),
            }
            .into());
        }
        matches
            .pop()
            .ok_or_else(|| Denied::NoMatchingEntry { proven: proven() }.into())
    }

    /// A fresh x509pop challenge.
    pub async fn new_x509pop_challenge(
        &self,
    ) -> Result<crate::attest::x509pop::Challenge, MintError> {
        self.attestors
            .new_challenge(self.store.as_ref(), self.clock.unix_now())
            .await
            .map_err(MintError::Attestation)
    }

    /// The entries registered under the calling agent. The agent's own
    /// entry must still exist and be unexpired.
    pub fn agent_entries(&self, agent: &Caller) -> Result<Vec<Arc<Entry>>, MintError> {
        self.check_agent(agent)?;
        Ok(self.entries.children_of(&agent.spiffe_id))
    }

    fn check_agent(&self, agent: &Caller) -> Result<Arc<Entry>, MintError> {
        let own = self.entry_for(agent)?;
        check_enabled(&own)?;
        if own.is_expired(self.clock.unix_now()) {
            return Err(Denied::AgentEntryExpired {
                entry_id: own.id.clone(),
                expired_at: own.expires_at,
            }
            .into());
        }
        Ok(own)
    }

    /// The entry `entry_id`, if it is registered under `agent`.
    fn child_entry(&self, agent: &Caller, entry_id: &str) -> Result<Arc<Entry>, MintError> {
        let id = crate::policy::EntryId::parse(entry_id).map_err(InvalidRequest::EntryId)?;
        let Some(entry) = self.entries.by_id(&id) else {
            return Err(Denied::NoSuchEntry { entry_id: id }.into());
        };
        if entry.parent_id.as_ref() != Some(&agent.spiffe_id) {
            return Err(Denied::NotUnderAgent {
                entry_id: id,
                spiffe_id: entry.spiffe_id.clone(),
                agent: agent.spiffe_id.clone(),
            }
            .into());
        }
        Ok(entry)
    }

    /// An agent obtains the X509-SVID of an entry registered under it, for
    /// a local workload (the agent made the key).
    pub async fn agent_mint_x509(
        &self,
        agent: &Caller,
        entry_id: &str,
        csr_der: &[u8],
    ) -> Result<X509Issued, MintError> {
        let (event, result) = self.agent_x509(agent, entry_id, csr_der);
        self.finish(event, result).await
    }

    /// [`agent_mint_x509`](Self::agent_mint_x509) for several entries at
    /// once: every item is issued, then all their audit records are made
    /// durable together (one group commit, not one per item). Results are
    /// in the order of `items` (entry id, CSR).
    pub async fn agent_mint_x509_batch<'a>(
        &self,
        agent: &Caller,
        items: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Vec<Result<X509Issued, MintError>> {
        let outcomes = items
            .into_iter()
            .map(|(entry_id, csr)| self.agent_x509(agent, entry_id, csr))
            .collect();
        self.finish_all(outcomes).await
    }

    fn agent_x509(
        &self,
        agent: &Caller,
        entry_id: &str,
        csr_der: &[u8],
    ) -> (AuditEvent, Result<X509Issued, MintError>) {
        let mut event = AuditEvent {
            action: "x509.issue".into(),
            actor: agent.spiffe_id.to_string(),
            entry_id: Some(entry_id.chars().take(64).collect()),
            detail: Some(serde_json::json!({ "via_agent": agent.spiffe_id.as_str() })),
            ..AuditEvent::default()
        };
        let result = (|| {
            let own = self.check_agent(agent)?;
            let entry = self.child_entry(agent, entry_id)?;
            event.spiffe_id = Some(entry.spiffe_id.to_string());
            check_agent_environment(&own, &entry)?;
            let csr = mayfly_ca::csr::parse_and_verify_csr(csr_der)?;
            self.issue_x509(entry, &csr, &mut event)
        })();
        (event, result)
    }

    /// An agent obtains a JWT-SVID of an entry registered under it.
    pub async fn agent_mint_jwt(
        &self,
        agent: &Caller,
        entry_id: &str,
        audience: &str,
        ttl: Option<Duration>,
    ) -> Result<JwtIssued, MintError> {
        let (event, result) = self.agent_jwt(agent, entry_id, audience, ttl);
        self.finish(event, result).await
    }

    /// [`agent_mint_jwt`](Self::agent_mint_jwt) for several entries at once:
    /// every item is signed, then all their audit records are made durable
    /// together. Results are in the order of `items` (entry id, audience,
    /// TTL).
    pub async fn agent_mint_jwt_batch<'a>(
        &self,
        agent: &Caller,
        items: impl IntoIterator<Item = (&'a str, &'a str, Option<Duration>)>,
    ) -> Vec<Result<JwtIssued, MintError>> {
        let outcomes = items
            .into_iter()
            .map(|(entry_id, audience, ttl)| self.agent_jwt(agent, entry_id, audience, ttl))
            .collect();
        self.finish_all(outcomes).await
    }

    fn agent_jwt(
        &self,
        agent: &Caller,
        entry_id: &str,
        audience: &str,
        ttl: Option<Duration>,
    ) -> (AuditEvent, Result<JwtIssued, MintError>) {
        let mut event = AuditEvent {
            action: "jwt.mint".into(),
            actor: agent.spiffe_id.to_string(),
            entry_id: Some(entry_id.chars().take(64).collect()),
            audience: Some(audience.chars().take(256).collect()),
            detail: Some(serde_json::json!({ "via_agent": agent.spiffe_id.as_str() })),
            ..AuditEvent::default()
        };
        let result = (|| {
            let audience = Audience::new(audience).map_err(InvalidRequest::Audience)?;
            let own = self.check_agent(agent)?;
            let entry = self.child_entry(agent, entry_id)?;
            event.spiffe_id = Some(entry.spiffe_id.to_string());
            check_agent_environment(&own, &entry)?;
            self.sign_jwt(&entry, &audience, ttl, &mut event)
        })();
        (event, result)
    }

    /// Issues a new X509-SVID for the identity the caller already holds.
    pub async fn renew_x509(
        &self,
        caller: &Caller,
        csr_der: &[u8],
    ) -> Result<X509Issued, MintError> {
        let mut event = AuditEvent {
            action: "x509.renew".into(),
            actor: caller.spiffe_id.to_string(),
            spiffe_id: Some(caller.spiffe_id.to_string()),
            detail: Some(serde_json::json!({ "presented_serial": caller.serial })),
            ..AuditEvent::default()
        };
        let result = async {
            let csr = mayfly_ca::csr::parse_and_verify_csr(csr_der)?;
            let entry = self.entry_for(caller)?;
            event.entry_id = Some(entry.id.to_string());
            self.issue_x509(entry, &csr, &mut event)
        }
        .await;
        self.finish(event, result).await
    }

    fn issue_x509(
        &self,
        entry: Arc<Entry>,
        csr: &mayfly_ca::csr::VerifiedCsr,
        event: &mut AuditEvent,
    ) -> Result<X509Issued, MintError> {
        let now = self.clock.now();
        let unix_now = crate::clock::unix_seconds(now);
        let grant = {
            let _policy = mayfly_telemetry::stage("mint.policy").entered();
            self.check_entry(&entry, CredentialKind::X509, unix_now)?
        };
        let mut ttl = u64::from(entry.x509_ttl_seconds).min(self.x509_cap);
        if let Some(grant) = &grant {
            ttl = ttl.min(grant_seconds_left(grant, unix_now));
            mark_breakglass(event, &grant.grant_id);
        }
        let _sign = mayfly_telemetry::stage("mint.sign").entered();
        let started = Instant::now();
        // The CSR was parsed and verified once, before anything was spent.
        let svid = self.ca.issue_x509_svid_verified(
            csr,
            &X509SvidRequest {
                csr_der: &[],
                spiffe_id: &entry.spiffe_id,
                dns_names: &entry.dns_names,
                ttl: Duration::from_secs(ttl),
                now,
            },
        )?;
        self.metrics.signed("x509", started.elapsed());
        event.serial = Some(svid.serial_hex.clone());
        if svid.clamped_to_signer {
            event.reason = Some("lifetime shortened to the signing CA's expiry".into());
        }
        self.usage.record(&entry.id, Minted::X509, unix_now);
        let breakglass = grant.map(|grant| GrantUse {
            grant_id: grant.grant_id,
            entry_id: entry.id.clone(),
            spiffe_id: entry.spiffe_id.clone(),
            owner: entry.owner.clone(),
            audience: None,
            credential: IssuedCredential {
                kind: IssuedKind::X509,
                id: svid.serial_hex.clone(),
                expires_at: crate::clock::unix_seconds(svid.not_after),
            },
        });
        Ok(X509Issued {
            entry,
            svid,
            breakglass,
        })
    }

    /// Mints a JWT-SVID for the caller's identity and one allowed audience.
    /// `ttl` of `None` means the entry's TTL; a given TTL may only shorten it.
    pub async fn mint_jwt(
        &self,
        caller: &Caller,
        audience: &str,
        ttl: Option<Duration>,
    ) -> Result<JwtIssued, MintError> {
        let mut event = AuditEvent {
            action: "jwt.mint".into(),
            actor: caller.spiffe_id.to_string(),
            spiffe_id: Some(caller.spiffe_id.to_string()),
            audience: Some(audience.chars().take(256).collect()),
            ..AuditEvent::default()
        };
        let result = async {
            let audience = Audience::new(audience).map_err(InvalidRequest::Audience)?;
            let entry = self.entry_for(caller)?;
            event.entry_id = Some(entry.id.to_string());
            self.sign_jwt(&entry, &audience, ttl, &mut event)
        }
        .await;
        self.finish(event, result).await
    }

    /// Checks that `entry` may have a JWT-SVID for `audience` now, then
    /// hands out the cached one for this entry, audience and TTL if it may
    /// be reused, or signs a new one.
    fn sign_jwt(
        &self,
        entry: &Entry,
        audience: &Audience,
        ttl: Option<Duration>,
        event: &mut AuditEvent,
    ) -> Result<JwtIssued, MintError> {
        let now = self.clock.unix_now();
        let (seconds, grant) = {
            let _policy = mayfly_telemetry::stage("mint.policy").entered();
            let mut grant = self.check_entry(entry, CredentialKind::Jwt, now)?;
            if let Err(refused) = check_audience(entry, audience) {
                // An audience grant widens an enabled entry by its one audience.
                let widened = self
                    .grant_in_force(entry, now)
                    .filter(|g| g.audience.as_ref() == Some(audience) && grant.is_none());
                match widened {
                    Some(widened) if entry.disabled.is_none() => grant = Some(widened.clone()),
                    _ => return Err(refused),
                }
            }
            crate::audience::check_mint(entry, audience, &self.audiences, &self.audience_policy)
                .map_err(Denied::Audience)?;
            let mut seconds = self.jwt_lifetime(entry, ttl)?;
            if let Some(grant) = &grant {
                seconds = seconds.min(grant_seconds_left(grant, now));
            }
            (seconds, grant)
        };
        if let Some(grant) = &grant {
            mark_breakglass(event, &grant.grant_id);
        }
        let signer = self.ca.jwt_signer();
        // Nothing minted under a grant is cached or handed out from the cache:
        // each one is recorded on its grant.
        let key = (!entry.unique_jti && grant.is_none()).then(|| {
            JwtCacheKey::new(entry, audience, ttl).with_governance_claims(self.governance_claims)
        });
        let reused = match &key {
            Some(key) => {
                let reused = self.reusable_jwt(key, entry, signer.key_id(), now)?;
                self.metrics.jwt_cache(reused.is_some());
                reused
            }
            None => None,
        };
        let jwt = match reused {
            Some(jwt) => {
                mark_reused(event);
                jwt
            }
            None => {
                let expires_at = now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX));
                let _sign = mayfly_telemetry::stage("mint.sign").entered();
                let started = Instant::now();
                let governance = [
                    (GOVERNANCE_ENV_CLAIM, entry.environment.as_str()),
                    (GOVERNANCE_CLASS_CLAIM, entry.data_class.as_str()),
                ];
                let extra: &[(&str, &str)] = if self.governance_claims {
                    &governance
                } else {
                    &[]
                };
                let signed = signer.sign_with_claims(
                    self.issuer.get().map(|issuer| &**issuer),
                    &entry.spiffe_id,
                    audience,
                    now,
                    expires_at,
                    extra,
                )?;
                self.metrics.signed("jwt", started.elapsed());
                let jwt = Arc::new(CachedJwt {
                    token: signed.token.into(),
                    jti: signed.jti,
                    issued_at: now,
                    expires_at,
                    key_id: signer.key_id().to_owned(),
                });
                if let Some(key) = key {
                    self.jwt_cache.insert(key, Arc::clone(&jwt), now);
                }
                jwt
            }
        };
        event.jti = Some(jwt.jti.clone());
        self.usage.record(
            &entry.id,
            Minted::Jwt {
                audience: audience.as_str(),
            },
            now,
        );
        let breakglass = grant.map(|grant| GrantUse {
            grant_id: grant.grant_id,
            entry_id: entry.id.clone(),
            spiffe_id: entry.spiffe_id.clone(),
            owner: entry.owner.clone(),
            audience: Some(audience.clone()),
            credential: IssuedCredential {
                kind: IssuedKind::Jwt,
                id: jwt.jti.clone(),
                expires_at: jwt.expires_at,
            },
        });
        Ok(JwtIssued {
            token: jwt.token.to_string(),
            jti: jwt.jti.clone(),
            spiffe_id: entry.spiffe_id.clone(),
            expires_at: jwt.expires_at,
            breakglass,
        })
    }

    /// The lifetime of a JWT-SVID for `entry`, in seconds: the entry's (under
    /// the configured cap), or `ttl` when that is shorter.
    fn jwt_lifetime(&self, entry: &Entry, ttl: Option<Duration>) -> Result<u64, MintError> {
        let max = u64::from(entry.jwt_ttl_seconds).min(self.jwt_cap);
        match ttl {
            None => Ok(max),
            Some(ttl) if ttl.as_secs() == 0 => Err(InvalidRequest::ZeroTtl.into()),
            Some(ttl) if ttl.as_secs() > max => Err(InvalidRequest::TtlTooLong {
                requested_secs: ttl.as_secs(),
                max_secs: max,
            }
            .into()),
            Some(ttl) => Ok(ttl.as_secs()),
        }
    }

    /// The cached JWT-SVID for `key`, if it may be handed out again: signed
    /// by the current key, at least half its lifetime left, and not covered
    /// by a revocation (of its `jti`, or of its subject after it was issued).
    /// A revoked one is dropped, so the caller signs a new one.
    fn reusable_jwt(
        &self,
        key: &JwtCacheKey,
        entry: &Entry,
        signer_key_id: &str,
        now: i64,
    ) -> Result<Option<Arc<CachedJwt>>, MintError> {
        let Some(cached) = self.jwt_cache.reusable(key, signer_key_id, now) else {
            return Ok(None);
        };
        match self.revocations.check_jwt(
            &entry.spiffe_id,
            Some(&cached.jti),
            Some(cached.issued_at),
            now,
        ) {
            Ok(()) => Ok(Some(cached)),
            Err(e @ RevocationError::Stale { .. }) => Err(Unavailable::Revocations(e).into()),
            Err(_) => {
                self.jwt_cache.forget(key, &cached);
                Ok(None)
            }
        }
    }

    /// Validates a JWT-SVID for `audience`: says who it belongs to, or why
    /// it is rejected. A token validated before is answered from the
    /// verified-token cache (shared, hence the `Arc`).
    pub fn validate_jwt(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<Arc<ValidatedJwtSvid>, MintError> {
        let result = self.validate_jwt_inner(token, audience);
        self.metrics
            .validation(result.as_ref().err().map(MintError::class));
        result
    }

    fn validate_jwt_inner(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<Arc<ValidatedJwtSvid>, MintError> {
        if audience.is_empty() {
            return Err(InvalidRequest::AudienceRequired.into());
        }
        let audience = Audience::new(audience).map_err(InvalidRequest::Audience)?;
        let now = self.clock.unix_now();
        // A token verified before is not verified again (its signature
        // cannot have changed); the revocation check below runs every time.
        let key = VerifiedTokens::key(token);
        let cached = self.verified.get(&key, &audience, now);
        self.metrics.cache("verified_token", cached.is_some());
        let validated = match cached {
            Some(hit) => hit,
            None => {
                let generation = self.verified.generation();
                let validated = Arc::new(
                    self.validator
                        .load()
                        .validate(token, &audience, now)
                        .map_err(Unproven::TokenInvalid)?,
                );
                self.verified
                    .insert(key, validated.clone(), generation, now);
                validated
            }
        };
        self.revocations
            .check_jwt(
                &validated.spiffe_id,
                validated.jti.as_deref(),
                validated.issued_at,
                now,
            )
            .map_err(|e| match e {
                RevocationError::Stale { .. } => MintError::from(Unavailable::Revocations(e)),
                _ => Unproven::TokenRevoked(e).into(),
            })?;
        Ok(validated)
    }

    fn entry_for(&self, caller: &Caller) -> Result<Arc<Entry>, MintError> {
        self.check_caller(caller)?;
        self.entries.by_spiffe_id(&caller.spiffe_id).ok_or_else(|| {
            Denied::NoEntryFor {
                spiffe_id: caller.spiffe_id.clone(),
            }
            .into()
        })
    }

    /// Checks that `entry` may have a `kind` credential at `now`; returns
    /// the break-glass grant that lets a disabled entry mint, when one does.
    fn check_entry(
        &self,
        entry: &Entry,
        kind: CredentialKind,
        now: i64,
    ) -> Result<Option<ActiveGrant>, MintError> {
        self.check_not_revoked(entry)?;
        let mut grant = None;
        if let Err(disabled) = check_enabled(entry) {
            grant = self
                .grant_in_force(entry, now)
                .filter(|g| g.audience.is_none())
                .cloned();
            if grant.is_none() {
                return Err(disabled);
            }
        }
        if entry.is_expired(now) {
            return Err(Denied::EntryExpired {
                entry_id: entry.id.clone(),
                spiffe_id: entry.spiffe_id.clone(),
                expired_at: entry.expires_at,
            }
            .into());
        }
        if !entry.allows_kind(kind) {
            return Err(Denied::KindNotAllowed {
                entry_id: entry.id.clone(),
                kind,
            }
            .into());
        }
        Ok(grant)
    }

    /// The break-glass grant in force on `entry`, when grants are applied.
    fn grant_in_force<'e>(&self, entry: &'e Entry, now: i64) -> Option<&'e ActiveGrant> {
        self.breakglass.get()?;
        entry.grant_in_force(now)
    }

    /// Appends the audit record for `result` and waits until it is durable;
    /// a credential is only returned once its record is. Every refusal is
    /// audited here; it is logged (rate-limited, never as an error unless it
    /// is our bug) where it becomes a status, in `api::status`.
    async fn finish<T: Issued>(
        &self,
        event: AuditEvent,
        result: Result<T, MintError>,
    ) -> Result<T, MintError> {
        let kind = credential_kind(&event.action);
        let result = self.record_grant_use(result).await;
        let event = outcome_event(event, &result);
        self.observe(&event, &result);
        annotate_call(&event);
        let actor = event.actor.clone();
        let receipt = self
            .audit
            .append(event)
            .instrument(mayfly_telemetry::stage("mint.audit_commit"))
            .await;
        let result = refuse_unaudited(result, receipt);
        self.announce_grant_use(&result, &actor);
        self.metrics
            .credential(kind, result.as_ref().err().map(MintError::class));
        annotate_refusal(&result);
        result
    }

    /// [`finish`](Self::finish) for many: the records are queued together,
    /// so they share one group commit.
    async fn finish_all<T: Issued>(
        &self,
        outcomes: Vec<(AuditEvent, Result<T, MintError>)>,
    ) -> Vec<Result<T, MintError>> {
        let mut recorded = Vec::with_capacity(outcomes.len());
        for (event, result) in outcomes {
            recorded.push((event, self.record_grant_use(result).await));
        }
        let (events, results): (Vec<_>, Vec<_>) = recorded
            .into_iter()
            .map(|(event, result)| {
                let kind = credential_kind(&event.action);
                let actor = event.actor.clone();
                let event = outcome_event(event, &result);
                self.observe(&event, &result);
                (event, (kind, actor, result))
            })
            .unzip();
        let receipts = self
            .audit
            .append_all(events)
            .instrument(mayfly_telemetry::stage("mint.audit_commit"))
            .await;
        results
            .into_iter()
            .zip(receipts)
            .map(|((kind, actor, result), receipt)| {
                let result = refuse_unaudited(result, receipt);
                self.announce_grant_use(&result, &actor);
                self.metrics
                    .credential(kind, result.as_ref().err().map(MintError::class));
                result
            })
            .collect()
    }
}

/// A credential the mint path hands out, which may have been issued under
/// a break-glass grant.
trait Issued {
    /// The grant it was issued under, if any.
    fn breakglass(&self) -> Option<&GrantUse>;
}

impl Issued for JwtIssued {
    fn breakglass(&self) -> Option<&GrantUse> {
        self.breakglass.as_ref()
    }
}

impl Issued for X509Issued {
    fn breakglass(&self) -> Option<&GrantUse> {
        self.breakglass.as_ref()
    }
}

impl Minter {
    /// Records a credential issued under a grant on the grant, before its
    /// audit record: refused (and so never handed out) if the grant ended
    /// meanwhile, issued its most, or the store cannot record it.
    async fn record_grant_use<T: Issued>(
        &self,
        result: Result<T, MintError>,
    ) -> Result<T, MintError> {
        let issued = result?;
        let (Some(grant_use), Some(breakglass)) = (issued.breakglass(), self.breakglass.get())
        else {
            return Ok(issued);
        };
        match breakglass.record_use(grant_use).await {
            Ok(()) => Ok(issued),
            Err(refused @ UseRefused::Store { .. }) => Err(Unavailable::Breakglass(refused).into()),
            Err(refused) => Err(Denied::Breakglass(refused).into()),
        }
    }

    /// Raises the alert for a credential handed out under a grant.
    fn announce_grant_use<T: Issued>(&self, result: &Result<T, MintError>, actor: &str) {
        if let (Ok(issued), Some(breakglass)) = (result, self.breakglass.get())
            && let Some(grant_use) = issued.breakglass()
        {
            breakglass.announce_use(grant_use, actor);
        }
    }
}

/// Seconds left of `grant` at `now` (at least 1: it is in force), which no
/// credential issued under it may outlive.
fn grant_seconds_left(grant: &ActiveGrant, now: i64) -> u64 {
    u64::try_from(grant.expires_at.saturating_sub(now))
        .unwrap_or(0)
        .max(1)
}

/// Names the grant in the mint's audit record (`breakglass: <grant>`).
fn mark_breakglass(event: &mut AuditEvent, grant_id: &str) {
    let grant = serde_json::Value::String(grant_id.to_owned());
    match event.detail.take() {
        Some(serde_json::Value::Object(mut detail)) => {
            detail.insert("breakglass".to_owned(), grant);
            event.detail = Some(serde_json::Value::Object(detail));
        }
        None | Some(serde_json::Value::Null) => {
            event.detail = Some(serde_json::json!({ "breakglass": grant }));
        }
        Some(other) => {
            event.detail = Some(serde_json::json!({ "breakglass": grant, "detail": other }));
        }
    }
}

/// Names the request on the current (RPC) span, when it is sampled: what
/// the audit record names, never a token, key or evidence.
fn annotate_call(event: &AuditEvent) {
    let span = tracing::Span::current();
    mayfly_telemetry::annotate(&span, "mayfly.action", || event.action.clone());
    if let Some(entry) = &event.entry_id {
        mayfly_telemetry::annotate(&span, "mayfly.entry_id", || entry.clone());
    }
    if let Some(spiffe_id) = &event.spiffe_id {
        mayfly_telemetry::annotate(&span, "mayfly.spiffe_id", || spiffe_id.clone());
    }
    if let Some(audience) = &event.audience {
        mayfly_telemetry::annotate(&span, "mayfly.audience", || audience.clone());
    }
}

/// The outcome, and whose fault a refusal was, on the current span.
fn annotate_refusal<T>(result: &Result<T, MintError>) {
    let span = tracing::Span::current();
    mayfly_telemetry::annotate(&span, "mayfly.outcome", || match result {
        Ok(_) => "granted",
        Err(_) => "refused",
    });
    if let Err(error) = result {
        mayfly_telemetry::annotate(&span, "mayfly.refusal", || error.class());
    }
}

/// The kind of credential an audited action asks for.
fn credential_kind(action: &str) -> &'static str {
    if action == "jwt.mint" { "jwt" } else { "x509" }
}

/// The audit record of a request, with its outcome.
fn outcome_event<T>(mut event: AuditEvent, result: &Result<T, MintError>) -> AuditEvent {
    match result {
        Ok(_) => event.outcome = Outcome::Granted,
        Err(e) => {
            event.outcome = Outcome::Refused;
            event.reason = Some(e.to_string());
        }
    }
    event
}

/// The result, unless its audit record could not be made durable.
fn refuse_unaudited<T>(
    result: Result<T, MintError>,
    receipt: Result<crate::audit::AuditReceipt, crate::audit::AuditError>,
) -> Result<T, MintError> {
    match receipt {
        Ok(_) => result,
        Err(e) => {
            tracing::error!(error = %e, "audit log append failed; refusing to issue");
            Err(Unavailable::Audit(e).into())
        }
    }
}

/// The audit detail of a join-token attestation, with the SPIFFE ID asked
/// for (truncated: it is the caller's text).
fn join_token_detail(requested: Option<&str>) -> serde_json::Value {
    match requested {
        Some(wanted) => serde_json::json!({
            "attestor": "join_token",
            "requested_spiffe_id": crate::attest::truncated(wanted),
        }),
        None => serde_json::json!({ "attestor": "join_token" }),
    }
}

/// Refuses a join token whose entry is not the SPIFFE ID the caller asked
/// for: a caller who asked for one identity must not be given another.
fn check_bound_to(entry: &Entry, wanted: &str) -> Result<(), MintError> {
    if entry.spiffe_id.as_str() == wanted {
        return Ok(());
    }
    Err(InvalidRequest::JoinTokenBoundElsewhere {
        bound_to: entry.spiffe_id.clone(),
        requested: crate::attest::truncated(wanted),
    }
    .into())
}

/// Refuses a workload entry whose environment is not its agent's: checked
/// at every agent mint, whatever the registration checks let through
/// (`crate::policy::separation`).
fn check_agent_environment(agent: &Entry, entry: &Entry) -> Result<(), MintError> {
    if agent.environment == entry.environment {
        return Ok(());
    }
    Err(Denied::AgentEnvironment(Box::new(AgentEnvironment {
        entry_id: entry.id.clone(),
        spiffe_id: entry.spiffe_id.clone(),
        environment: entry.environment.clone(),
        agent: agent.spiffe_id.clone(),
        agent_entry_id: agent.id.clone(),
        agent_environment: agent.environment.clone(),
    }))
    .into())
}

/// Refuses an entry whose environment the attestor configuration that
/// proved the evidence is not pinned to (its `environments`).
fn check_attestor_environment(
    attestors: &Attestors,
    attestation: &Attestation,
    entry: &Entry,
) -> Result<(), MintError> {
    let Some(pin) = attestors.environment_pin(attestation) else {
        return Ok(());
    };
    if pin.environments.contains(&entry.environment) {
        return Ok(());
    }
    Err(Denied::AttestorEnvironment(Box::new(AttestorEnvironment {
        attestor: pin.source,
        entry_id: entry.id.clone(),
        spiffe_id: entry.spiffe_id.clone(),
        environment: entry.environment.clone(),
        allowed: pin.environments.to_vec(),
    }))
    .into())
}

/// Refuses an entry an operator or the governance sweeper disabled, naming
/// who, when, why and the way back.
fn check_enabled(entry: &Entry) -> Result<(), MintError> {
    match &entry.disabled {
        Some(disabled) => Err(Denied::EntryDisabled {
            entry_id: entry.id.clone(),
            disabled: (**disabled).clone(),
        }
        .into()),
        None => Ok(()),
    }
}

fn check_audience(entry: &Entry, audience: &Audience) -> Result<(), MintError> {
    if entry.allows_audience(audience) {
        return Ok(());
    }
    Err(Denied::AudienceNotAllowed {
        audience: audience.as_str().to_owned(),
        spiffe_id: entry.spiffe_id.clone(),
        allowed: entry
            .audiences
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
    }
    .into())
}

/// Says in the audit record that the JWT-SVID handed out was a cached one,
/// keeping what the record's detail already says (an agent, an attestor).
fn mark_reused(event: &mut AuditEvent) {
    match event.detail.take() {
        Some(serde_json::Value::Object(mut detail)) => {
            detail.insert("reused".to_owned(), serde_json::Value::Bool(true));
            event.detail = Some(serde_json::Value::Object(detail));
        }
        None | Some(serde_json::Value::Null) => {
            event.detail = Some(serde_json::json!({ "reused": true }));
        }
        Some(other) => {
            event.detail = Some(serde_json::json!({ "reused": true, "detail": other }));
        }
    }
}

/// The validator of `ValidateJwtSvid`: `authorities`, `leeway`, and no
/// token living longer than `max_lifetime` (the configured JWT cap) plus the
/// leeway, since this broker mints none.
fn build_validator(
    ca: &CertificateAuthority,
    authorities: &[JwtAuthority],
    leeway: Duration,
    max_lifetime: Duration,
) -> Result<JwtSvidValidator, MintError> {
    Ok(
        JwtSvidValidator::new(ca.trust_domain().clone(), authorities)
            .map_err(Internal::Validator)?
            .with_leeway(leeway)
            .with_max_lifetime(max_lifetime),
    )
}

/// The evidence's hash for the audit record of a refusal.
fn evidence_hash(evidence: &Evidence) -> Option<String> {
    match evidence {
        Evidence::K8sPsat(token) | Evidence::Oidc(token) => {
            Some(crate::attest::sha256_hex(token.as_bytes()))
        }
        Evidence::X509Pop {
            chain, signature, ..
        } => {
            let mut bytes = Vec::new();
            for der in chain {
                bytes.extend_from_slice(der);
            }
            bytes.extend_from_slice(signature);
            Some(crate::attest::sha256_hex(&bytes))
        }
    }
}

#[cfg(test)]
mod tests;
