//! X509-SVIDs and X.509 bundles as the Workload API delivers them, parsed
//! once: certificates split, the private key loaded for rustls and checked
//! against the leaf, bundles turned into trust anchors.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, TrustAnchor};
use zeroize::Zeroizing;

use super::WorkloadError;
use crate::proto::workload as wl;
use crate::x509::{inspect_leaf, split_certificates};
use crate::{SpiffeId, TrustDomain};

/// An X509-SVID with its private key.
///
/// `Debug` never shows the key; the key's bytes are wiped when the last
/// copy is dropped.
pub struct X509Svid {
    spiffe_id: SpiffeId,
    cert_chain_der: Vec<Vec<u8>>,
    private_key_der: Zeroizing<Vec<u8>>,
    expires_at: i64,
    hint: Option<String>,
    /// The chain and the loaded signing key, for the rustls cert resolvers.
    certified_key: Arc<CertifiedKey>,
}

impl fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("spiffe_id", &self.spiffe_id)
            .field(
                "cert_chain_der",
                &format_args!("[{} certificates]", self.cert_chain_der.len()),
            )
            .field("expires_at", &self.expires_at)
            .field("hint", &self.hint)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl X509Svid {
    /// The SPIFFE ID, the leaf's one URI SAN.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The DER certificates, leaf first, then the intermediates.
    pub fn cert_chain_der(&self) -> &[Vec<u8>] {
        &self.cert_chain_der
    }

    /// The leaf certificate, DER.
    pub fn leaf_der(&self) -> &[u8] {
        // A parsed SVID's chain is never empty (`parse` refuses that).
        self.cert_chain_der.first().map_or(&[], Vec::as_slice)
    }

    /// The private key, PKCS#8 DER. Handle with care: it is what the
    /// identity rests on.
    pub fn private_key_pkcs8_der(&self) -> &[u8] {
        &self.private_key_der
    }

    /// The leaf's `notAfter`, Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// The operator's hint for choosing among several SVIDs, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    pub(crate) fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// Parses one SVID of a Workload API response, taking its key out of
    /// the message so no unwiped copy is left behind.
    fn parse(mut svid: wl::X509svid) -> Result<Self, WorkloadError> {
        let key = Zeroizing::new(std::mem::take(&mut svid.x509_svid_key));
        let spiffe_id: SpiffeId = svid.spiffe_id.parse().map_err(|e| {
            WorkloadError::invalid_response(format!("SVID SPIFFE ID {:?}: {e}", svid.spiffe_id))
        })?;
        let cert_chain_der = split_certificates(&svid.x509_svid)
            .map_err(|e| WorkloadError::invalid_response(format!("{spiffe_id}: chain: {e}")))?;
        let leaf = cert_chain_der.first().ok_or_else(|| {
            WorkloadError::invalid_response(format!("{spiffe_id}: empty certificate chain"))
        })?;
        let leaf_info = inspect_leaf(leaf)
            .map_err(|e| WorkloadError::invalid_response(format!("{spiffe_id}: leaf: {e}")))?;
        if leaf_info.spiffe_id != spiffe_id {
            return Err(WorkloadError::invalid_response(format!(
                "the SVID for {spiffe_id} carries the SPIFFE ID {}",
                leaf_info.spiffe_id
            )));
        }
        if key.is_empty() {
            return Err(WorkloadError::invalid_response(format!(
                "{spiffe_id}: no private key"
            )));
        }
        let certified_key = certified_key(&cert_chain_der, &key)
            .map_err(|e| WorkloadError::invalid_response(format!("{spiffe_id}: {e}")))?;
        Ok(X509Svid {
            spiffe_id,
            cert_chain_der,
            private_key_der: key,
            expires_at: leaf_info.not_after,
            hint: (!svid.hint.is_empty()).then_some(svid.hint),
            certified_key: Arc::new(certified_key),
        })
    }

    /// Same identity, same certificates.
    fn same_as(&self, other: &X509Svid) -> bool {
        self.spiffe_id == other.spiffe_id && self.cert_chain_der == other.cert_chain_der
    }
}

/// Loads the key for rustls and checks it belongs to the leaf.
fn certified_key(chain: &[Vec<u8>], key: &Zeroizing<Vec<u8>>) -> Result<CertifiedKey, String> {
    // Borrowed, so rustls makes no copy of the key bytes that would outlive
    // the zeroizing buffer.
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.as_slice()));
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| format!("the private key is not usable: {e}"))?;
    let chain = chain
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(_) => Err("the private key does not match the leaf certificate".to_owned()),
    }
}

/// A trust domain's X.509 authorities: the roots X509-SVIDs chain to.
pub struct X509Bundle {
    trust_domain: TrustDomain,
    authorities_der: Vec<Vec<u8>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl fmt::Debug for X509Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Bundle")
            .field("trust_domain", &self.trust_domain)
            .field(
                "authorities_der",
                &format_args!("[{} certificates]", self.authorities_der.len()),
            )
            .finish()
    }
}

impl X509Bundle {
    /// The trust domain these authorities speak for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The authorities, DER certificates.
    pub fn authorities_der(&self) -> &[Vec<u8>] {
        &self.authorities_der
    }

    pub(crate) fn trust_anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// Parses concatenated DER certificates (the wire form).
    fn parse(trust_domain: TrustDomain, concatenated: &[u8]) -> Result<Self, WorkloadError> {
        let invalid =
            |e: String| WorkloadError::invalid_response(format!("bundle of {trust_domain}: {e}"));
        let authorities_der =
            split_certificates(concatenated).map_err(|e| invalid(e.to_string()))?;
        if authorities_der.is_empty() {
            return Err(invalid("no certificates".to_owned()));
        }
        let anchors = authorities_der
            .iter()
            .map(|der| {
                webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                    .map(|anchor| anchor.to_owned())
                    .map_err(|e| invalid(format!("not a usable trust anchor: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(X509Bundle {
            trust_domain,
            authorities_der,
            anchors,
        })
    }
}

/// Everything `FetchX509SVID` says at one moment: the workload's SVIDs, in
/// the agent's order, and the bundles to verify peers with.
#[derive(Debug)]
pub struct X509Context {
    svids: Vec<Arc<X509Svid>>,
    bundles: BTreeMap<TrustDomain, Arc<X509Bundle>>,
}

impl X509Context {
    /// The workload's SVIDs; never empty. The first is the default.
    pub fn svids(&self) -> &[Arc<X509Svid>] {
        &self.svids
    }

    /// The SVID for `spiffe_id`, or the first when `None`.
    pub fn svid(&self, spiffe_id: Option<&SpiffeId>) -> Option<&Arc<X509Svid>> {
        match spiffe_id {
            None => self.svids.first(),
            Some(id) => self.svids.iter().find(|svid| svid.spiffe_id() == id),
        }
    }

    /// The X.509 bundle of `trust_domain`: the workload's own, or a
    /// federated one.
    pub fn bundle(&self, trust_domain: &TrustDomain) -> Option<&Arc<X509Bundle>> {
        self.bundles.get(trust_domain)
    }

    /// Every bundle, by trust domain.
    pub fn bundles(&self) -> impl Iterator<Item = &Arc<X509Bundle>> {
        self.bundles.values()
    }

    /// Parses a `FetchX509SVID` message.
    pub(crate) fn parse(response: wl::X509svidResponse) -> Result<Self, WorkloadError> {
        let wl::X509svidResponse {
            svids,
            federated_bundles,
            ..
        } = response;
        if svids.is_empty() {
            return Err(WorkloadError::invalid_response("no SVID in the response"));
        }
        let mut bundles = BTreeMap::new();
        let mut parsed = Vec::with_capacity(svids.len());
        for mut svid in svids {
            let bundle_der = std::mem::take(&mut svid.bundle);
            let svid = X509Svid::parse(svid)?;
            let trust_domain = svid.spiffe_id().trust_domain();
            if let Entry::Vacant(slot) = bundles.entry(trust_domain) {
                let bundle = X509Bundle::parse(slot.key().clone(), &bundle_der)?;
                slot.insert(Arc::new(bundle));
            }
            parsed.push(Arc::new(svid));
        }
        for (key, der) in federated_bundles {
            let trust_domain = TrustDomain::new(&key).map_err(|e| {
                WorkloadError::invalid_response(format!("federated bundle key {key:?}: {e}"))
            })?;
            // A federated bundle never replaces the workload's own.
            if let Entry::Vacant(slot) = bundles.entry(trust_domain) {
                let bundle = X509Bundle::parse(slot.key().clone(), &der)?;
                slot.insert(Arc::new(bundle));
            }
        }
        Ok(X509Context {
            svids: parsed,
            bundles,
        })
    }

    /// Whether the two hold the same SVIDs and authorities.
    pub(crate) fn same_as(&self, other: &X509Context) -> bool {
        self.svids.len() == other.svids.len()
            && self
                .svids
                .iter()
                .zip(&other.svids)
                .all(|(a, b)| a.same_as(b))
            && self.bundles.len() == other.bundles.len()
            && self
                .bundles
                .iter()
                .zip(&other.bundles)
                .all(|((td_a, a), (td_b, b))| {
                    td_a == td_b && a.authorities_der == b.authorities_der
                })
    }
}

/// The SPIFFE ID of a peer's leaf certificate (for instance from
/// `rustls::CommonState::peer_certificates` after a handshake with a config
/// of [`X509Source`](super::X509Source), which has already verified it).
///
/// # Errors
///
/// [`WorkloadError::NotAnX509Svid`] unless the certificate carries exactly
/// one URI SAN that is a valid SPIFFE ID, and is a leaf.
pub fn spiffe_id_from_certificate(leaf_der: &[u8]) -> Result<SpiffeId, WorkloadError> {
    inspect_leaf(leaf_der)
        .map(|facts| facts.spiffe_id)
        .map_err(|error| WorkloadError::NotAnX509Svid {
            reason: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(uris: &[&str], ca: bool) -> Vec<u8> {
        crate::x509::test_leaf(uris, ca)
    }

    #[test]
    fn a_leaf_has_exactly_one_spiffe_uri() {
        let id = "spiffe://example.org/api";
        assert_eq!(
            spiffe_id_from_certificate(&leaf(&[id], false))
                .unwrap()
                .as_str(),
            id
        );
        for bad in [
            leaf(&[], false),
            leaf(&[id, "spiffe://example.org/other"], false),
            leaf(&["https://example.org/api"], false),
            leaf(&[id], true),
            b"not a certificate".to_vec(),
        ] {
            assert!(matches!(
                spiffe_id_from_certificate(&bad),
                Err(WorkloadError::NotAnX509Svid { .. })
            ));
        }
    }
}
