//! What the agent knows at one moment: the entries registered under it,
//! the trust bundle, and the workload X509-SVIDs it holds.
//!
//! A [`Snapshot`] is immutable. The sync loop builds a new one and publishes
//! it ([`super::state::AgentState::publish`]); Workload API requests read the
//! current one without taking a lock.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use mayfly_sdk::bundle::SpiffeBundle;
use mayfly_sdk::jwt::JwtSvidValidator;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::workload as wl;
use mayfly_sdk::{SpiffeId, TrustDomain};
use zeroize::Zeroizing;

use mayfly_sdk::Selector;

/// One entry registered under this agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegisteredEntry {
    pub(crate) id: String,
    pub(crate) spiffe_id: SpiffeId,
    /// What a local workload must prove; all of them.
    pub(crate) selectors: Vec<Selector>,
    pub(crate) audiences: Vec<String>,
    pub(crate) x509: bool,
    pub(crate) jwt: bool,
    /// Unix seconds; 0 for none.
    pub(crate) expires_at: i64,
    pub(crate) revision: u64,
    /// Every JWT-SVID must have its own `jti`: never hand one out twice.
    pub(crate) unique_jti: bool,
}

impl RegisteredEntry {
    /// Parses the wire form; an entry this agent cannot use is an error.
    pub(crate) fn from_proto(entry: &pb::AgentEntry) -> Result<Self, String> {
        let spiffe_id = entry
            .spiffe_id
            .parse::<SpiffeId>()
            .map_err(|e| format!("SPIFFE ID {:?}: {e}", entry.spiffe_id))?;
        let selectors = entry
            .selectors
            .iter()
            .map(|s| Selector::parse(s).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RegisteredEntry {
            id: entry.entry_id.clone(),
            spiffe_id,
            selectors,
            audiences: entry.audiences.clone(),
            x509: entry.x509,
            jwt: entry.jwt,
            expires_at: entry.expires_at,
            revision: entry.revision,
            unique_jti: entry.unique_jti,
        })
    }

    /// Whether a workload that proved `proven` gets this identity: every
    /// selector of the entry is among them. An entry without selectors
    /// matches nobody: it would hand its identity to every local process.
    pub(crate) fn matches(&self, proven: &HashSet<&Selector>) -> bool {
        !self.selectors.is_empty() && self.selectors.iter().all(|s| proven.contains(s))
    }

    /// Whether the entry still mints at `now`.
    pub(crate) fn is_live(&self, now: i64) -> bool {
        self.expires_at == 0 || now < self.expires_at
    }

    /// Whether JWT-SVIDs for `audience` may be minted for it.
    pub(crate) fn allows_audience(&self, audience: &str) -> bool {
        self.jwt && self.audiences.iter().any(|a| a == audience)
    }
}

/// The trust domain's bundle, in the forms the Workload API serves.
pub(crate) struct TrustBundle {
    pub(crate) trust_domain: TrustDomain,
    pub(crate) sequence: u64,
    /// DER root certificates.
    pub(crate) roots_der: Vec<Vec<u8>>,
    /// The same, concatenated: the wire form of an X.509 bundle.
    pub(crate) roots_concatenated: Vec<u8>,
    /// A JWK Set (RFC 7517) of the JWT authorities.
    pub(crate) jwks_json: Vec<u8>,
    /// Validates JWT-SVIDs; `None` when the bundle has no JWT authority.
    pub(crate) validator: Option<JwtSvidValidator>,
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("trust_domain", &self.trust_domain)
            .field("sequence", &self.sequence)
            .field("roots", &self.roots_der.len())
            .field("validator", &self.validator)
            .finish_non_exhaustive()
    }
}

impl TrustBundle {
    /// Parses the broker's bundle.
    pub(crate) fn from_proto(bundle: &pb::Bundle) -> Result<Self, String> {
        let trust_domain = TrustDomain::new(&bundle.trust_domain)
            .map_err(|e| format!("trust domain {:?}: {e}", bundle.trust_domain))?;
        if bundle.x509_authorities.is_empty() {
            return Err("the bundle has no X.509 authority".to_owned());
        }
        let document = SpiffeBundle::parse(trust_domain.clone(), &bundle.spiffe_bundle_json)
            .map_err(|e| format!("SPIFFE bundle document: {e}"))?;
        let jwks_json = document
            .to_jwks_json()
            .map_err(|e| format!("JWKS: {e}"))?
            .into_bytes();
        let validator = if document.jwt_authorities.is_empty() {
            None
        } else {
            Some(
                JwtSvidValidator::new(trust_domain.clone(), &document.jwt_authorities)
                    .map_err(|e| format!("JWT authorities: {e}"))?,
            )
        };
        Ok(TrustBundle {
            trust_domain,
            sequence: bundle.sequence,
            roots_concatenated: bundle.x509_authorities.concat(),
            roots_der: bundle.x509_authorities.clone(),
            jwks_json,
            validator,
        })
    }

    /// Whether the two serve the same content.
    pub(crate) fn same_content(&self, other: &TrustBundle) -> bool {
        self.trust_domain == other.trust_domain
            && self.roots_der == other.roots_der
            && self.jwks_json == other.jwks_json
    }

    /// The trust domain's SPIFFE ID (`spiffe://td`): the key of bundle maps.
    pub(crate) fn key(&self) -> String {
        self.trust_domain.id_string()
    }
}

/// A workload X509-SVID the agent holds: the key was made here.
pub(crate) struct WorkloadSvid {
    pub(crate) entry_id: String,
    pub(crate) spiffe_id: SpiffeId,
    /// The entry revision it was minted for; a new revision re-mints.
    pub(crate) revision: u64,
    /// DER certificates, leaf first, concatenated.
    pub(crate) chain_der: Vec<u8>,
    /// PKCS#8 DER.
    pub(crate) key_pkcs8: Zeroizing<Vec<u8>>,
    /// Canonical hex ([`mayfly_sdk::revocation::serial_from_bytes`]).
    pub(crate) serial: String,
    /// `notBefore`, Unix seconds: identity revocations cover SVIDs from
    /// before them.
    pub(crate) not_before: i64,
    pub(crate) expires_at: i64,
    pub(crate) refresh_at: i64,
}

impl fmt::Debug for WorkloadSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadSvid")
            .field("entry_id", &self.entry_id)
            .field("spiffe_id", &self.spiffe_id)
            .field("revision", &self.revision)
            .field("serial", &self.serial)
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Everything the Workload API serves, at one moment.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// In SPIFFE ID order, as the broker lists them.
    pub(crate) entries: Vec<Arc<RegisteredEntry>>,
    pub(crate) bundle: Option<Arc<TrustBundle>>,
    /// By entry id.
    pub(crate) x509: HashMap<String, Arc<WorkloadSvid>>,
}

impl Snapshot {
    /// The live entries a workload that proved `proven` is entitled to.
    pub(crate) fn matching(&self, proven: &[Selector], now: i64) -> Vec<Arc<RegisteredEntry>> {
        let proven: HashSet<&Selector> = proven.iter().collect();
        self.entries
            .iter()
            .filter(|entry| entry.is_live(now) && entry.matches(&proven))
            .cloned()
            .collect()
    }

    /// The X509-SVIDs of `entries` valid at `now` that `servable` lets
    /// through (not revoked), in entry order, each with the trust domain's
    /// bundle. Empty when there is no bundle yet.
    pub(crate) fn x509_svids(
        &self,
        entries: &[Arc<RegisteredEntry>],
        now: i64,
        servable: impl Fn(&WorkloadSvid) -> bool,
    ) -> Vec<wl::X509svid> {
        let Some(bundle) = &self.bundle else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|entry| self.x509.get(&entry.id))
            .filter(|svid| now < svid.expires_at && servable(svid))
            .map(|svid| wl::X509svid {
                spiffe_id: svid.spiffe_id.to_string(),
                x509_svid: svid.chain_der.clone(),
                x509_svid_key: svid.key_pkcs8.to_vec(),
                bundle: bundle.roots_concatenated.clone(),
                hint: String::new(),
            })
            .collect()
    }

    /// The X.509 bundles map: trust domain SPIFFE ID → concatenated DER roots.
    pub(crate) fn x509_bundles(&self) -> HashMap<String, Vec<u8>> {
        self.bundle
            .iter()
            .map(|b| (b.key(), b.roots_concatenated.clone()))
            .collect()
    }

    /// The JWT bundles map: trust domain SPIFFE ID → JWK Set JSON.
    pub(crate) fn jwt_bundles(&self) -> HashMap<String, Vec<u8>> {
        self.bundle
            .iter()
            .map(|b| (b.key(), b.jwks_json.clone()))
            .collect()
    }

    /// Whether the two serve the same bundle.
    pub(crate) fn same_bundle(&self, other: &Snapshot) -> bool {
        match (&self.bundle, &other.bundle) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same_content(b),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, selectors: &[&str]) -> Arc<RegisteredEntry> {
        Arc::new(RegisteredEntry {
            id: id.to_owned(),
            spiffe_id: format!("spiffe://example.org/{id}").parse().unwrap(),
            selectors: proven(selectors),
            audiences: vec!["db".to_owned()],
            x509: true,
            jwt: true,
            expires_at: 0,
            revision: 1,
            unique_jti: false,
        })
    }

    fn proven(selectors: &[&str]) -> Vec<Selector> {
        selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn an_entry_matches_when_all_its_selectors_are_proven() {
        let snapshot = Snapshot {
            entries: vec![
                entry("a", &["unix:uid:1000"]),
                entry("b", &["unix:uid:1000", "unix:gid:50"]),
                entry("c", &["unix:uid:2000"]),
            ],
            ..Snapshot::default()
        };
        let ids = |proof: &[&str]| -> Vec<String> {
            snapshot
                .matching(&proven(proof), 0)
                .iter()
                .map(|e| e.id.clone())
                .collect()
        };
        assert_eq!(ids(&["unix:uid:1000"]), ["a"]);
        assert_eq!(
            ids(&["unix:uid:1000", "unix:gid:50", "unix:user:x"]),
            ["a", "b"]
        );
        assert!(ids(&["unix:uid:3000"]).is_empty());
        assert!(ids(&[]).is_empty());
    }

    #[test]
    fn an_entry_without_selectors_matches_nobody() {
        let snapshot = Snapshot {
            entries: vec![entry("open", &[])],
            ..Snapshot::default()
        };
        assert!(snapshot.matching(&proven(&["unix:uid:0"]), 0).is_empty());
    }

    #[test]
    fn expired_entries_match_nobody() {
        let mut expiring = (*entry("a", &["unix:uid:1"])).clone();
        expiring.expires_at = 100;
        let snapshot = Snapshot {
            entries: vec![Arc::new(expiring)],
            ..Snapshot::default()
        };
        assert_eq!(snapshot.matching(&proven(&["unix:uid:1"]), 99).len(), 1);
        assert!(snapshot.matching(&proven(&["unix:uid:1"]), 100).is_empty());
    }

    #[test]
    fn audiences_need_the_jwt_kind() {
        let mut e = (*entry("a", &["unix:uid:1"])).clone();
        assert!(e.allows_audience("db"));
        assert!(!e.allows_audience("other"));
        e.jwt = false;
        assert!(!e.allows_audience("db"));
    }

    #[test]
    fn bad_wire_entries_are_refused() {
        let wire = pb::AgentEntry {
            entry_id: "e1".into(),
            spiffe_id: "spiffe://example.org/a".into(),
            selectors: vec!["unix:uid:1".into()],
            ..Default::default()
        };
        assert!(RegisteredEntry::from_proto(&wire).is_ok());
        let bad_id = pb::AgentEntry {
            spiffe_id: "https://x".into(),
            ..wire.clone()
        };
        assert!(RegisteredEntry::from_proto(&bad_id).is_err());
        let bad_selector = pb::AgentEntry {
            selectors: vec!["no colon".into()],
            ..wire
        };
        assert!(RegisteredEntry::from_proto(&bad_selector).is_err());
    }

    #[test]
    fn svid_debug_hides_the_key() {
        let svid = WorkloadSvid {
            entry_id: "e".into(),
            spiffe_id: "spiffe://example.org/a".parse().unwrap(),
            revision: 1,
            chain_der: vec![1],
            key_pkcs8: Zeroizing::new(b"SECRET-KEY-BYTES".to_vec()),
            serial: "1".into(),
            not_before: 0,
            expires_at: 2,
            refresh_at: 1,
        };
        let debug = format!("{svid:?}");
        assert!(debug.contains("[redacted]"));
        assert!(!debug.contains("83, 69, 67"), "{debug}");
    }
}
